"""Pure parts of the stats: histogram buckets and percentiles, rollup windows, series
parameters, the live window's weights."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.latency import BOUNDS, BUCKETS, bucket_of, histogram, percentile
from dispatch.rollups import (
    HOUR,
    MINUTE,
    AttemptFacts,
    floor_to,
    last_day,
    pieces,
    roll_up,
    window_bounds,
)
from dispatch.series import MAX_POINTS, SeriesError, parse_series_query
from dispatch.stats import LiveWindow, live_shape, weight

NOW = datetime(2026, 11, 26, 5, 17, 6, 123456, tzinfo=UTC)


def test_buckets_are_log_spaced_and_each_duration_falls_in_one():
    assert len(BOUNDS) + 1 == BUCKETS
    ratios = {round(b / a, 9) for a, b in zip(BOUNDS, BOUNDS[1:], strict=False)}
    assert ratios == {round(2 ** 0.25, 9)}
    assert bucket_of(0) == 0 and bucket_of(BOUNDS[0] * 0.99) == 0
    assert bucket_of(BOUNDS[0]) == 1  # a bound opens its bucket
    assert bucket_of(BOUNDS[-1]) == BUCKETS - 1 and bucket_of(10**9) == BUCKETS - 1
    for index in range(1, BUCKETS - 1):
        assert BOUNDS[index - 1] <= BOUNDS[index - 1] * 1.01 < BOUNDS[index]
        assert bucket_of(BOUNDS[index - 1] * 1.01) == index


def test_bucketed_percentiles_stay_within_a_bucket_of_the_exact_ones():
    rng = random.Random(3)
    durations = [rng.lognormvariate(4, 1.2) for _ in range(5000)]
    counts = histogram(durations)
    ordered = sorted(durations)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[int(q * len(ordered)) - 1]
        assert abs(percentile(counts, q) - exact) / exact < 2 ** 0.25 - 1


def test_percentile_of_nothing_is_none_and_weights_may_be_fractional():
    assert percentile([0] * BUCKETS, 0.5) is None
    counts = [0.0] * BUCKETS
    counts[bucket_of(10.0)] = 0.25
    assert BOUNDS[bucket_of(10.0) - 1] <= percentile(counts, 0.5) < BOUNDS[bucket_of(10.0)]
    overflow = [0] * BUCKETS
    overflow[-1] = 3
    assert percentile(overflow, 0.99) == BOUNDS[-1]


def test_roll_up_groups_by_endpoint_minute_and_hour_in_key_order():
    minute = floor_to(NOW, MINUTE)
    rows = roll_up([
        AttemptFacts("ep_b", minute - timedelta(microseconds=1), 200, 3.0),
        AttemptFacts("ep_a", minute, 500, 3.0),
        AttemptFacts("ep_a", minute + timedelta(seconds=59.999999), None, 300.0),
        AttemptFacts("ep_a", minute + timedelta(seconds=60), 204, 3.0),
    ])
    keys = [(row.endpoint_id, row.span, row.start_at) for row in rows]
    assert keys == sorted(keys)
    by_key = {key: row for key, row in zip(keys, rows, strict=True)}
    a_minute = by_key[("ep_a", MINUTE, minute)]
    assert (a_minute.attempts, a_minute.successes, a_minute.failures) == (2, 0, 2)
    assert a_minute.latency[bucket_of(3.0)] == 1 and a_minute.latency[bucket_of(300.0)] == 1
    assert by_key[("ep_a", HOUR, floor_to(NOW, HOUR))].attempts == 3
    assert by_key[("ep_b", MINUTE, minute - timedelta(minutes=1))].successes == 1


def test_total_rows_come_last_under_the_writers_key():
    rows = roll_up([AttemptFacts("ep_b", NOW, 200, 3.0), AttemptFacts("ep_a", NOW, 500, 3.0)],
                   "*2")
    assert [row.endpoint_id for row in rows] == ["ep_a", "ep_a", "ep_b", "ep_b", "*2", "*2"]
    assert rows[-2].attempts == 2 and rows[-2].failures == 1


def test_pieces_cover_the_window_once_with_hours_inside():
    rng = random.Random(5)
    for _ in range(200):
        since = floor_to(NOW - timedelta(minutes=rng.randrange(0, 3000)), MINUTE)
        until = since + timedelta(minutes=rng.randrange(1, 3000))
        parts = pieces(since, until)
        assert parts[0].since == since and parts[-1].until == until
        for left, right in zip(parts, parts[1:], strict=False):
            assert left.until == right.since
        for part in parts:
            assert part.since < part.until
            if part.span == HOUR:
                assert floor_to(part.since, HOUR) == part.since
                assert floor_to(part.until, HOUR) == part.until
            else:
                assert part.until - part.since < timedelta(hours=2)
        bounds = window_bounds(since, until)
        covered = [(bounds[i], bounds[i + 1]) for i in (0, 2, 4) if bounds[i] < bounds[i + 1]]
        assert covered == [(part.since, part.until) for part in parts]
        hours = [[part.since, part.until] for part in parts if part.span == HOUR]
        assert bounds[2:4] == (hours[0] if hours else [since, since])
    since, until = last_day(NOW)
    assert until - since == timedelta(hours=24, minutes=1)
    assert [part.span for part in pieces(since, until)] == [MINUTE, HOUR, MINUTE]
    assert sum(1 for part in pieces(since, until) if part.span == HOUR) == 1


def test_series_parameters():
    query = parse_series_query({"metric": "p95_ms"}, NOW)
    assert query.step == 60 and query.points == 60
    assert query.until == datetime(2026, 11, 26, 5, 18, tzinfo=UTC)
    query = parse_series_query({"metric": "events", "step": "3600",
                                "since": "2026-11-25T05:30:00Z",
                                "until": "2026-11-26T05:00:00+00:00"}, NOW)
    assert query.since == datetime(2026, 11, 25, 5, tzinfo=UTC) and query.points == 24
    assert query.span == HOUR
    # '+' in a query string arrives as a space when not encoded
    query = parse_series_query({"metric": "events", "since": "2026-11-26T05:00:00 00:00"}, NOW)
    assert query.since == datetime(2026, 11, 26, 5, tzinfo=UTC)


@pytest.mark.parametrize(("params", "field"), [
    ({"metric": "latency"}, "metric"),
    ({}, "metric"),
    ({"metric": "events", "color": "red"}, "color"),
    ({"metric": "events", "step": "90"}, "step"),
    ({"metric": "events", "step": "0"}, "step"),
    ({"metric": "events", "step": "1m"}, "step"),
    ({"metric": "events", "step": "60", "since": "2026-11-01T00:00:00Z"}, "step"),
    ({"metric": "events", "since": "yesterday"}, "since"),
    ({"metric": "events", "until": "2026-13-01"}, "until"),
    ({"metric": "events", "since": "2026-11-26T06:00:00Z"}, "since"),
    ({"metric": "events", "endpoint": "ep_1"}, "endpoint"),
    ({"metric": "deliveries", "source": "github"}, "source"),
])
def test_series_parameters_refused_name_the_parameter(params, field):
    with pytest.raises(SeriesError) as refused:
        parse_series_query(params, NOW)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_series_points_are_bounded():
    since = (NOW - timedelta(minutes=MAX_POINTS - 1)).isoformat()
    assert parse_series_query({"metric": "events", "since": since}, NOW).points == MAX_POINTS
    too_many = (NOW - timedelta(minutes=MAX_POINTS)).isoformat()
    with pytest.raises(SeriesError):
        parse_series_query({"metric": "events", "since": too_many}, NOW)


def test_live_window_weights_the_previous_minute_by_what_is_left_of_it():
    minute = floor_to(NOW, MINUTE)
    assert weight(minute, NOW) == 1.0
    assert weight(minute - timedelta(minutes=1), NOW) == pytest.approx(1 - 6.123456 / 60)
    assert weight(minute - timedelta(minutes=2), NOW) == 0.0


def test_an_idle_live_window_sends_null_rates_and_percentiles():
    idle = live_shape(LiveWindow(0.0, 0.0, 0.0, [0.0] * BUCKETS, pending=4, in_flight=0))
    assert idle == {"events_per_s": 0.0, "deliveries_per_s": 0.0, "success_rate": None,
                    "pending": 4, "in_flight": 0, "p50_ms": None, "p95_ms": None}
    latency = [0.0] * BUCKETS
    latency[bucket_of(12.0)] = 30.0
    busy = live_shape(LiveWindow(120.0, 30.0, 27.0, latency, pending=0, in_flight=2))
    assert busy["events_per_s"] == 2.0 and busy["deliveries_per_s"] == 0.5
    assert busy["success_rate"] == 0.9
    assert BOUNDS[bucket_of(12.0) - 1] <= busy["p50_ms"] <= BOUNDS[bucket_of(12.0)]

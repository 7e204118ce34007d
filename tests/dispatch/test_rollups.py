"""The rollups written by the settle batches and the router hold exactly what the attempt
and event tables hold, and every read made from them (endpoint stats, the health of all
endpoints, series, the live window) equals the same figure computed from the raw rows
(percentiles: the same bucketed percentile computed from the raw durations)."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

import pytest

from dispatch.latency import BOUNDS, histogram, percentile, rounded_ms
from dispatch.queue import Claimed, pooled
from dispatch.rollups import MINUTE, TOTAL_KEYS, floor_to, is_success, last_day, prune
from dispatch.routing import Router
from dispatch.sender import AttemptResult
from dispatch.series import parse_series_query, point_value, read_series
from dispatch.settle import Settlement, SettleWriter
from dispatch.stats import (
    endpoint_stats,
    endpoints_health,
    live_shape,
    read_live_window,
    weight,
)
from kernel.ids import new_id

pytestmark = pytest.mark.usefixtures("db_left_empty")


async def make_endpoint() -> str:
    endpoint_id = new_id("ep")
    async with pooled() as connection:
        await connection.execute(
            "INSERT INTO endpoint (id, url, description, enabled, secret_encrypted, event_types,"
            " sources, max_in_flight, consecutive_failures, created_at, updated_at)"
            " VALUES ($1, 'http://127.0.0.1:9/', '', true, 'x', '[]', '[]', 10, 0,"
            " now(), now())", endpoint_id)
    return endpoint_id


def settlement(endpoint_id: str, started_at: datetime, status_code: int | None,
               duration_ms: float) -> Settlement:
    job = Claimed(id=new_id("dlv"), event_id=new_id("evt"), endpoint_id=endpoint_id, attempt=1,
                  retry_base=0, due_at=started_at, endpoint_exists=True, endpoint_enabled=True,
                  endpoint_updated_at=None, circuit_opened_at=None, consecutive_failures=0,
                  circuit_probe_at=None, event_exists=True, body=b"", headers={},
                  content_type="", event_type=None, source_slug=None)
    result = AttemptResult(started_at=started_at, duration_ms=duration_ms, request_headers={},
                           status_code=status_code,
                           error=None if status_code is not None else "connect")
    success = is_success(status_code)
    return Settlement(job, result, "succeeded" if success else "retrying", None, None,
                      success=success, gone=False)


def writer(owner: str) -> SettleWriter:
    # A threshold no test reaches: the circuit is not what these tests look at.
    return SettleWriter(owner, circuit_threshold=10**9)


def random_attempts(rng: random.Random, endpoints: list[str], now: datetime,
                    count: int) -> list[Settlement]:
    """Attempts over the last 26 hours, none within 3 minutes of the 24-hour window's start
    (so the minute the test reads in cannot move an attempt in or out), with durations on
    bucket bounds and minute boundaries among them."""
    current = floor_to(now, MINUTE)
    window_start = current - timedelta(hours=24)
    items: list[Settlement] = []
    while len(items) < count:
        started = now - timedelta(seconds=rng.uniform(0, 26 * 3600))
        if abs((started - window_start).total_seconds()) < 180:
            continue
        if rng.random() < 0.1:  # exactly on a minute boundary, or just before it
            started = floor_to(started, MINUTE) - timedelta(microseconds=rng.choice([0, 1]))
        duration = (rng.choice(BOUNDS) if rng.random() < 0.1
                    else rng.lognormvariate(4, 1.5))
        status = rng.choice([200, 200, 200, 201, 204, 302, 404, 500, 503, None])
        items.append(settlement(rng.choice(endpoints), started, status, duration))
    # The current and the previous minute, for the live window.
    for seconds in (0.5, 10, 59, 61, 90, 119):
        started = max(now - timedelta(seconds=seconds), current - timedelta(seconds=MINUTE))
        items.append(settlement(rng.choice(endpoints), started, rng.choice([200, 500]),
                                rng.uniform(1, 900)))
    return items


async def write_concurrently(items: list[Settlement], rng: random.Random) -> None:
    """Two dispatchers' writers, many batches in flight at once, keys in random order."""
    writers = [writer("dispatcher-a"), writer("dispatcher-b")]
    writers[0].total_key, writers[1].total_key = TOTAL_KEYS[0], TOTAL_KEYS[1]
    rng.shuffle(items)
    batches = [items[i:i + 40] for i in range(0, len(items), 40)]
    await asyncio.gather(*(writers[n % 2].write(batch) for n, batch in enumerate(batches)))


async def raw_attempts() -> list:
    async with pooled() as connection:
        return await connection.fetch(
            "SELECT endpoint_id, started_at, status_code, duration_ms FROM attempt")


def expected_stats(rows: list) -> dict:
    attempts = len(rows)
    successes = sum(1 for row in rows if is_success(row["status_code"]))
    counts = histogram([row["duration_ms"] for row in rows])
    return {
        "success_rate": round(successes / attempts, 4) if attempts else None,
        "attempts": attempts,
        "failures": attempts - successes,
        "p50_ms": rounded_ms(percentile(counts, 0.5)),
        "p95_ms": rounded_ms(percentile(counts, 0.95)),
        "p99_ms": rounded_ms(percentile(counts, 0.99)),
    }


STAT_KEYS = ("success_rate", "attempts", "failures", "p50_ms", "p95_ms", "p99_ms")


async def test_rollups_equal_the_attempts_they_count():
    rng = random.Random(7)
    endpoints = [await make_endpoint() for _ in range(3)]
    now = datetime.now().astimezone()
    await write_concurrently(random_attempts(rng, endpoints, now, 1500), rng)
    raw = await raw_attempts()
    assert len(raw) == 1506

    async with pooled() as connection:
        rollups = await connection.fetch(
            "SELECT endpoint_id, span, start_at, attempts, successes, failures, latency"
            " FROM endpoint_rollup")
    per_endpoint = [row for row in rollups if row["endpoint_id"] in endpoints]
    for row in per_endpoint:
        counted = [a for a in raw if a["endpoint_id"] == row["endpoint_id"]
                   and floor_to(a["started_at"], row["span"]) == row["start_at"]]
        assert row["attempts"] == len(counted)
        assert row["successes"] == sum(is_success(a["status_code"]) for a in counted)
        assert row["failures"] == row["attempts"] - row["successes"]
        assert list(row["latency"]) == histogram([a["duration_ms"] for a in counted])
    for span in (60, 3600):
        assert sum(row["attempts"] for row in per_endpoint if row["span"] == span) == len(raw)
    # The total rows (two writers: one or two shards) hold every attempt once.
    totals = [row for row in rollups if row["endpoint_id"] in TOTAL_KEYS]
    assert {row["endpoint_id"] for row in totals} <= set(TOTAL_KEYS)
    assert len(totals) + len(per_endpoint) == len(rollups)
    for span in (60, 3600):
        periods = {floor_to(a["started_at"], span) for a in raw}
        for start in periods:
            counted = [a for a in raw if floor_to(a["started_at"], span) == start]
            rows = [row for row in totals if row["span"] == span and row["start_at"] == start]
            assert sum(row["attempts"] for row in rows) == len(counted)
            assert [sum(column) for column in zip(*(row["latency"] for row in rows),
                                                  strict=True)] == histogram(
                [a["duration_ms"] for a in counted])


async def test_endpoint_stats_and_health_equal_the_raw_figures():
    rng = random.Random(11)
    endpoints = sorted([await make_endpoint() for _ in range(3)])
    idle = await make_endpoint()
    now = datetime.now().astimezone()
    await write_concurrently(random_attempts(rng, endpoints, now, 1200), rng)
    raw = await raw_attempts()

    since, _ = last_day(datetime.now().astimezone())
    health = {row["endpoint_id"]: row for row in await endpoints_health()}
    assert set(health) == {*endpoints, idle}
    for endpoint_id in endpoints:
        expected = expected_stats([a for a in raw if a["endpoint_id"] == endpoint_id
                                   and a["started_at"] >= since])
        assert expected["attempts"] > 0
        stats = await endpoint_stats(endpoint_id)
        assert {key: stats[key] for key in STAT_KEYS} == expected
        assert {key: health[endpoint_id][key] for key in STAT_KEYS} == expected
        assert stats["in_flight"] == 0 and stats["pending"] == 0
        assert stats["circuit"] == "closed"
    assert health[idle]["attempts"] == 0 and health[idle]["success_rate"] is None
    assert health[idle]["p50_ms"] is None


@pytest.mark.parametrize("metric", ["deliveries", "failures", "success_rate", "p50_ms",
                                    "p95_ms"])
async def test_series_equal_the_raw_figures(metric):
    rng = random.Random(13)
    endpoints = [await make_endpoint() for _ in range(2)]
    now = datetime.now().astimezone()
    await write_concurrently(random_attempts(rng, endpoints, now, 800), rng)
    raw = await raw_attempts()
    cases = [
        {"step": "60", "since": (now - timedelta(hours=2)).isoformat()},
        {"step": "300", "since": (now - timedelta(hours=3)).isoformat(),
         "endpoint": endpoints[0]},
        {"step": "3600", "since": (now - timedelta(hours=26)).isoformat()},
        {"step": "7200", "since": (now - timedelta(hours=30)).isoformat(),
         "endpoint": endpoints[1]},
    ]
    for params in cases:
        query = parse_series_query({"metric": metric, **params}, now)
        async with pooled() as connection:
            series = await read_series(connection, query)
        assert series["metric"] == metric and series["step"] == query.step
        assert len(series["points"]) == query.points
        for point in series["points"]:
            start = datetime.fromisoformat(point["t"])
            inside = [a for a in raw if start <= a["started_at"] < start + timedelta(
                seconds=query.step) and params.get("endpoint") in (None, a["endpoint_id"])]
            assert point["value"] == expected_point(metric, inside), (params, point)


def expected_point(metric: str, rows: list) -> float | int | None:
    if metric == "deliveries":
        return len(rows)
    if metric == "failures":
        return sum(1 for row in rows if not is_success(row["status_code"]))
    if not rows:
        return None
    if metric == "success_rate":
        return round(sum(1 for row in rows if is_success(row["status_code"])) / len(rows), 4)
    counts = histogram([row["duration_ms"] for row in rows])
    return rounded_ms(percentile(counts, 0.5 if metric == "p50_ms" else 0.95))


async def test_live_window_equals_the_raw_last_minute():
    rng = random.Random(17)
    endpoints = [await make_endpoint() for _ in range(2)]
    now = datetime.now().astimezone()
    await write_concurrently(random_attempts(rng, endpoints, now, 300), rng)
    raw = await raw_attempts()
    async with pooled() as connection:
        window = await read_live_window(connection, now)
    shares = [weight(floor_to(a["started_at"], MINUTE), now) for a in raw]
    attempts = sum(shares)
    successes = sum(s for s, a in zip(shares, raw, strict=True) if is_success(a["status_code"]))
    assert attempts > 0
    assert window.attempts == pytest.approx(attempts)
    assert window.successes == pytest.approx(successes)
    latency = [0.0] * len(window.latency)
    for share, row in zip(shares, raw, strict=True):
        latency[histogram([row["duration_ms"]]).index(1)] += share
    assert window.latency == pytest.approx(latency)
    shaped = live_shape(window)
    assert shaped["deliveries_per_s"] == round(attempts / 60, 2)
    assert shaped["success_rate"] == round(successes / attempts, 4)
    assert shaped["p50_ms"] == round(percentile(latency, 0.5), 1)


async def test_two_routers_count_each_event_once_in_its_minute():
    base = floor_to(datetime.now().astimezone(), 3600) - timedelta(hours=2)
    offsets = [0, 0.000001, 59.999999, 60, 61, 3599.999999, 3600, 3660.5, 5000, 7199]
    async with pooled() as connection:
        await connection.execute("""
            INSERT INTO event (id, source_slug, received_at, method, query, headers,
                               content_type, size, body)
            SELECT 'evt_' || lpad(n::text, 26, '0'),
                   (ARRAY['github', 'stripe', NULL])[1 + n % 3],
                   $1::timestamptz + make_interval(secs => ($2::float8[])[1 + n % $3]),
                   'POST', '', '{}', 'application/json', 0, ''::bytea
            FROM generate_series(1, 3000) AS n""", base, offsets, len(offsets))
        await connection.execute("INSERT INTO event_unrouted (event_id, event_type, source_slug,"
                                 " received_at) SELECT id, event_type, source_slug, received_at"
                                 " FROM event")
    routers = [Router(batch=100), Router(batch=100)]
    await asyncio.gather(*(router.route_all() for router in routers))
    await asyncio.gather(*(router.route_all() for router in routers))
    async with pooled() as connection:
        expected = {(row["source"], row["span"], row["start_at"]): row["n"] for row in
                    await connection.fetch("""
            SELECT coalesce(source_slug, '') AS source, s.span,
                   to_timestamp(floor(extract(epoch FROM received_at) / s.span) * s.span)
                       AS start_at, count(*) AS n
            FROM event CROSS JOIN (VALUES (60), (3600)) AS s(span) GROUP BY 1, 2, 3""")}
        counted = {(row["source"], row["span"], row["start_at"]): row["events"] for row in
                   await connection.fetch("SELECT * FROM source_rollup")}
        assert await connection.fetchval("SELECT count(*) FROM event_unrouted") == 0
    assert counted == expected
    assert counted[("github", 60, base)] == sum(
        1 for n in range(1, 3001) if n % 3 == 1 and offsets[n % len(offsets)] < 60)
    query = parse_series_query({"metric": "events", "since": base.isoformat(),
                                "until": (base + timedelta(hours=2)).isoformat(),
                                "source": "stripe"}, base + timedelta(hours=2))
    async with pooled() as connection:
        series = await read_series(connection, query)
    assert sum(point["value"] for point in series["points"]) == 1000
    assert series["points"][0] == {"t": base.isoformat(), "value": expected[("stripe", 60, base)]}


async def test_attempts_on_either_side_of_a_minute_land_in_their_own_minute():
    endpoint_id = await make_endpoint()
    minute = floor_to(datetime.now().astimezone(), MINUTE) - timedelta(minutes=5)
    await writer("a").write([
        settlement(endpoint_id, minute - timedelta(microseconds=1), 200, 10.0),
        settlement(endpoint_id, minute, 500, 20.0),
        settlement(endpoint_id, minute + timedelta(seconds=59, microseconds=999999), 200, 30.0),
        settlement(endpoint_id, minute + timedelta(seconds=60), 200, 40.0),
    ])
    async with pooled() as connection:
        rows = await connection.fetch(
            "SELECT start_at, attempts, failures FROM endpoint_rollup WHERE span = 60"
            " AND endpoint_id = $1 ORDER BY start_at", endpoint_id)
    assert [(row["start_at"], row["attempts"], row["failures"]) for row in rows] == [
        (minute - timedelta(minutes=1), 1, 0), (minute, 2, 1),
        (minute + timedelta(minutes=1), 1, 0)]
    query = parse_series_query({"metric": "deliveries", "since": minute.isoformat(),
                                "until": (minute + timedelta(minutes=1)).isoformat()}, minute)
    async with pooled() as connection:
        series = await read_series(connection, query)
    assert series["points"] == [{"t": minute.isoformat(), "value": 2}]
    assert point_value("p50_ms", None) is None and point_value("deliveries", None) == 0


async def test_prune_drops_only_rows_older_than_the_cutoff():
    endpoint_id = await make_endpoint()
    now = datetime.now().astimezone()
    await writer("a").write([settlement(endpoint_id, now - timedelta(days=40), 200, 5.0),
                             settlement(endpoint_id, now - timedelta(days=2), 200, 5.0)])
    async with pooled() as connection:
        removed = await prune(connection, now - timedelta(days=30), batch_size=1)
        left = await connection.fetch("SELECT span, start_at FROM endpoint_rollup")
    assert removed == 4  # a minute and an hour row, of the endpoint and of the total
    assert len(left) == 4 and all(row["start_at"] > now - timedelta(days=3) for row in left)

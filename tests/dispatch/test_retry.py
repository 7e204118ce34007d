"""The retry policy: schedule, jitter, Retry-After, outcomes, circuit breaker, auto-disable."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.retry import (
    CIRCUIT_COOLDOWN_SECONDS,
    CIRCUIT_FAILURE_THRESHOLD,
    DEFAULT_JITTER,
    CircuitState,
    after_attempt,
    circuit_status,
    classify_response,
    jittered,
    next_attempt_delay,
    parse_retry_after,
    should_auto_disable,
)
from relay.settings import parse_retry_schedule

NOW = datetime(2026, 11, 26, 5, 17, 6, tzinfo=UTC)
DEFAULT_SCHEDULE = parse_retry_schedule("5,300,1800,7200,18000,36000,36000")


def test_the_default_schedule_text_parses_to_the_designed_steps():
    assert DEFAULT_SCHEDULE == [5, 300, 1800, 7200, 18000, 36000, 36000]


def test_jitter_stays_within_twenty_percent_and_spreads():
    rng = random.Random(1)
    values = [jittered(100.0, rng) for _ in range(2000)]
    assert DEFAULT_JITTER == 0.2
    assert all(80.0 <= v <= 120.0 for v in values)
    assert min(values) < 82 and max(values) > 118
    assert len({round(v, 6) for v in values}) > 1900
    assert jittered(0.0, rng) == 0.0
    assert all(jittered(10.0, rng, jitter=0.0) == 10.0 for _ in range(10))


def test_jitter_is_reproducible_with_a_seed():
    assert [jittered(5, random.Random(7)) for _ in range(3)] == [
        jittered(5, random.Random(7)) for _ in range(3)
    ]


@pytest.mark.parametrize(
    ("attempts_made", "base"),
    [(1, 5), (2, 300), (3, 1800), (4, 7200), (5, 18000), (6, 36000), (7, 36000)],
)
def test_default_schedule_steps_are_jittered(attempts_made, base):
    rng = random.Random(attempts_made)
    for _ in range(200):
        delay = next_attempt_delay(DEFAULT_SCHEDULE, attempts_made, None, rng)
        assert base * 0.8 <= delay <= base * 1.2


def test_default_schedule_runs_out_after_eight_tries():
    rng = random.Random(0)
    assert next_attempt_delay(DEFAULT_SCHEDULE, 7, None, rng) is not None
    assert next_attempt_delay(DEFAULT_SCHEDULE, 8, None, rng) is None
    assert next_attempt_delay(DEFAULT_SCHEDULE, 50, None, rng) is None


@pytest.mark.parametrize(
    ("schedule", "attempts_made", "expected"),
    [
        ([], 1, None),
        ([1.0], 1, 1.0),
        ([1.0], 2, None),
        ([0.2, 0.4, 0.8], 1, 0.2),
        ([0.2, 0.4, 0.8], 2, 0.4),
        ([0.2, 0.4, 0.8], 3, 0.8),
        ([0.2, 0.4, 0.8], 4, None),
        ([0, 10], 1, 0.0),
        ([3.0], 0, 3.0),
    ],
)
def test_explicit_schedules_without_jitter(schedule, attempts_made, expected):
    assert next_attempt_delay(schedule, attempts_made, None, random.Random(0), jitter=0) == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 100.0),  # the scheduled delay
        (0.0, 100.0),  # never sooner than the schedule
        (50.0, 100.0),
        (150.0, 150.0),  # honoured in between
        (200.0, 200.0),
        (10_000.0, 200.0),  # never more than twice the schedule
    ],
)
def test_retry_after_is_clamped_between_the_step_and_twice_it(retry_after, expected):
    assert next_attempt_delay([100], 1, retry_after, random.Random(0), jitter=0) == expected


def test_retry_after_clamp_uses_the_jittered_step():
    seed = 42
    step = jittered(100, random.Random(seed))
    assert step != 100
    assert next_attempt_delay([100], 1, 0, random.Random(seed)) == step
    assert next_attempt_delay([100], 1, 1e9, random.Random(seed)) == 2 * step
    assert next_attempt_delay([100], 2, 1e9, random.Random(seed)) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Thu, 26 Nov 2026 05:19:06 GMT", 120.0),
        ("Thursday, 26-Nov-26 05:17:36 GMT", 30.0),
        ("Thu Nov 26 05:17:16 2026", 10.0),
        ("Thu, 26 Nov 2026 05:00:00 GMT", 0.0),  # in the past
        ("Thu, 32 Nov 2026 05:19:06 GMT", None),
        ("Thu, 26 Nov 2026 25:19:06 GMT", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_with_a_naive_now_assumes_utc():
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Thu, 26 Nov 2026 05:19:06 GMT", naive) == 120.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "succeeded"), (201, "succeeded"), (202, "succeeded"), (204, "succeeded"),
        (299, "succeeded"),
        (100, "retry"), (199, "retry"),
        (300, "retry"), (301, "retry"), (302, "retry"), (304, "retry"), (307, "retry"),
        (308, "retry"),
        (400, "retry"), (401, "retry"), (403, "retry"), (404, "retry"), (409, "retry"),
        (410, "gone"),
        (413, "retry"), (429, "retry"),
        (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (599, "retry"),
    ],
)
def test_classify_response(status, outcome):
    assert classify_response(status) == outcome


# --- circuit breaker -------------------------------------------------------------------------

def _fail(state: CircuitState, times: int, at: datetime, threshold: int = 3) -> CircuitState:
    for _ in range(times):
        state = after_attempt(state, False, at, threshold)
    return state


def test_circuit_defaults():
    assert CIRCUIT_FAILURE_THRESHOLD == 10
    assert CIRCUIT_COOLDOWN_SECONDS == 30
    assert circuit_status(CircuitState(), NOW, CIRCUIT_COOLDOWN_SECONDS) == "closed"
    state = CircuitState()
    for _ in range(CIRCUIT_FAILURE_THRESHOLD - 1):
        state = after_attempt(state, False, NOW, CIRCUIT_FAILURE_THRESHOLD)
    assert circuit_status(state, NOW) == "closed"
    state = after_attempt(state, False, NOW, CIRCUIT_FAILURE_THRESHOLD)
    assert circuit_status(state, NOW) == "open"


@pytest.mark.parametrize(
    ("failures", "seconds_later", "status"),
    [
        (0, 0, "closed"),
        (2, 0, "closed"),
        (2, 1000, "closed"),
        (3, 0, "open"),
        (3, 29.9, "open"),
        (3, 30, "half_open"),
        (3, 3600, "half_open"),
        (7, 10, "open"),
    ],
)
def test_circuit_opens_at_the_threshold_and_half_opens_after_the_cooldown(
    failures, seconds_later, status
):
    state = _fail(CircuitState(), failures, NOW)
    assert state.consecutive_failures == failures
    assert circuit_status(state, NOW + timedelta(seconds=seconds_later), 30) == status


def test_a_success_resets_the_failure_run():
    state = _fail(CircuitState(), 2, NOW)
    state = after_attempt(state, True, NOW, 3)
    assert state == CircuitState(None, 0)
    state = _fail(state, 2, NOW)
    assert circuit_status(state, NOW, 30) == "closed"


def test_a_failed_probe_reopens_and_a_successful_probe_closes():
    opened = _fail(CircuitState(), 3, NOW)
    probe_time = NOW + timedelta(seconds=31)
    assert circuit_status(opened, probe_time, 30) == "half_open"

    reopened = after_attempt(opened, False, probe_time, 3)
    assert reopened.opened_at == probe_time
    assert circuit_status(reopened, probe_time + timedelta(seconds=1), 30) == "open"
    assert circuit_status(reopened, probe_time + timedelta(seconds=30), 30) == "half_open"

    closed = after_attempt(reopened, True, probe_time + timedelta(seconds=31), 3)
    assert circuit_status(closed, probe_time + timedelta(seconds=31), 30) == "closed"


# --- auto-disable ----------------------------------------------------------------------------

DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("first_failure", "last_success", "now", "expected"),
    [
        (None, None, NOW, False),
        (None, NOW - 10 * DAY, NOW, False),
        (NOW - 5 * DAY, None, NOW, True),
        (NOW - 5 * DAY + timedelta(seconds=1), None, NOW, False),
        (NOW - 6 * DAY, NOW - 7 * DAY, NOW, True),  # last success before the failures
        (NOW - 6 * DAY, NOW - 1 * DAY, NOW, False),  # a success since
        (NOW - 6 * DAY, NOW - 6 * DAY, NOW, False),
        (NOW - 1 * DAY, None, NOW, False),
    ],
)
def test_should_auto_disable(first_failure, last_success, now, expected):
    assert should_auto_disable(first_failure, last_success, now) is expected


def test_auto_disable_days_is_a_parameter():
    assert should_auto_disable(NOW - 2 * DAY, None, NOW, days=1)
    assert not should_auto_disable(NOW - 2 * DAY, None, NOW, days=3)

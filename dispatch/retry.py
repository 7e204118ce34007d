"""The retry policy as pure functions: what an answer means, when to try again, and when an
endpoint is circuit-broken or disabled. The dispatcher supplies the clock and the randomness.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

DEFAULT_JITTER = 0.2

CIRCUIT_FAILURE_THRESHOLD = 10
"""Consecutive failed attempts that open an endpoint's circuit. Ten rides out a short blip
(a deploy, a few 502s) without tripping, yet stops a dead endpoint after ten attempts instead
of letting every due delivery tie up a worker until its timeout."""

CIRCUIT_COOLDOWN_SECONDS = 30.0
"""How long an open circuit waits before one probe goes. Thirty seconds is short next to the
retry schedule's later steps (minutes to hours), so a recovered endpoint gets its backlog
within half a minute, and it costs a dead endpoint only one attempt per 30 s."""

AUTO_DISABLE_DAYS = 5

Outcome = Literal["succeeded", "gone", "retry"]
CircuitStatus = Literal["closed", "open", "half_open"]


def jittered(delay: float, rng: random.Random, jitter: float = DEFAULT_JITTER) -> float:
    """`delay` moved by up to ±`jitter` (a fraction), so retries of a burst spread out."""
    return max(0.0, delay * (1.0 + rng.uniform(-jitter, jitter)))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date).

    Garbage gives None; a time in the past or a negative number gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt_delay(
    schedule: list[float],
    attempts_made: int,
    retry_after: float | None,
    rng: random.Random,
    *,
    jitter: float = DEFAULT_JITTER,
) -> float | None:
    """Seconds before the next try, or None when the schedule has run out (→ `failed`).

    `attempts_made` counts the tries so far (1 after the first). `schedule[0]` is the delay
    after the first try. A `Retry-After` is honoured but clamped between the jittered
    scheduled delay and twice it, so a subscriber can slow Relay down, not stall it.
    """
    step = max(attempts_made, 1) - 1
    if step >= len(schedule):
        return None
    delay = jittered(float(schedule[step]), rng, jitter)
    if retry_after is not None:
        delay = min(max(retry_after, delay), 2 * delay)
    return delay


def classify_response(status_code: int) -> Outcome:
    """2xx succeeded; 410 Gone disables the endpoint; anything else (3xx too) is retried."""
    if 200 <= status_code <= 299:
        return "succeeded"
    if status_code == 410:
        return "gone"
    return "retry"


@dataclass(frozen=True)
class CircuitState:
    """One endpoint's breaker: when it opened (None = closed) and the current failure run."""

    opened_at: datetime | None = None
    consecutive_failures: int = 0


def circuit_status(
    state: CircuitState, now: datetime, cooldown_seconds: float = CIRCUIT_COOLDOWN_SECONDS
) -> CircuitStatus:
    """`open` during the cool-down; `half_open` after it (one probe may go)."""
    if state.opened_at is None:
        return "closed"
    if now - state.opened_at < timedelta(seconds=cooldown_seconds):
        return "open"
    return "half_open"


def after_attempt(
    state: CircuitState,
    success: bool,
    now: datetime,
    threshold: int = CIRCUIT_FAILURE_THRESHOLD,
) -> CircuitState:
    """The breaker after one attempt. A success closes it; a failed probe reopens it."""
    if success:
        return CircuitState(opened_at=None, consecutive_failures=0)
    failures = state.consecutive_failures + 1
    if state.opened_at is not None or failures >= threshold:
        return CircuitState(opened_at=now, consecutive_failures=failures)
    return CircuitState(opened_at=None, consecutive_failures=failures)


def should_auto_disable(
    first_failure_at: datetime | None,
    last_success_at: datetime | None,
    now: datetime,
    days: float = AUTO_DISABLE_DAYS,
) -> bool:
    """True when the endpoint has failed for `days` with no success since it began failing."""
    if first_failure_at is None:
        return False
    if last_success_at is not None and last_success_at >= first_failure_at:
        return False
    return now - first_failure_at >= timedelta(days=days)


def auto_disable_reason(days: float = AUTO_DISABLE_DAYS) -> str:
    return f"failing for {days:g} days with no successful delivery"

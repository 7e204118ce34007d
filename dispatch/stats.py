"""Endpoint health and the live figures, read from the rollups (dispatch/rollups.py).

Endpoint stats cover the last 24 hours in whole minutes (see `rollups.last_day`). The
open deliveries (`in_flight`, `pending`) are counted on the partial index of open
deliveries, each count stopping at `OPEN_COUNT_CAP`: a backlog that large reads as "at
least", and the read stays as cheap with a million rows waiting as with none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from dispatch.endpoints import utcnow
from dispatch.latency import BUCKETS, percentile, rounded_ms
from dispatch.queue import pooled
from dispatch.retry import CIRCUIT_COOLDOWN_SECONDS, CircuitState, circuit_status
from dispatch.rollups import (
    LIVE_EVENTS,
    LIVE_MINUTES,
    MINUTE,
    TOTAL_KEYS,
    Totals,
    floor_to,
    last_day,
    sums_by_endpoint,
)
from dispatch.states import DELIVERING, WAITING_SQL

_INDEX_SCANS_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
"""For the open-delivery counts, which must stop at their cap. When most of the delivery
table is open (a backlog after an outage) the planner expects a sequential scan to find
`cap` rows of an endpoint soon, and for an endpoint with few open deliveries that scan
reads the whole table (2 s measured on 200,000 rows); a bitmap scan reads every index
entry of the endpoint before the limit applies (35 ms for a backlog of 200,000). A plain
scan of the partial index of open deliveries stops at the cap."""

OPEN_COUNT_CAP = 1_000
"""Counting an endpoint's open deliveries stops here."""
LIVE_PENDING_CAP = 1_000
"""Counting all waiting deliveries (the live `pending`) stops here."""

_OPEN_COUNTS = f"""
(SELECT count(*) FROM (SELECT 1 FROM delivery d WHERE d.endpoint_id = e.id
                       AND d.status = '{DELIVERING}' LIMIT $1) AS f) AS in_flight,
(SELECT count(*) FROM (SELECT 1 FROM delivery d WHERE d.endpoint_id = e.id
                       AND d.status IN {WAITING_SQL} LIMIT $1) AS w) AS pending
"""  # noqa: S608 - constant SQL text
_OPEN_OF_ENDPOINT = f"""
SELECT e.id, e.circuit_opened_at, e.consecutive_failures, {_OPEN_COUNTS}
FROM endpoint AS e WHERE e.id = $2
"""  # noqa: S608 - constant SQL text
_OPEN_OF_ALL = f"""
SELECT e.id, e.circuit_opened_at, e.consecutive_failures, {_OPEN_COUNTS}
FROM endpoint AS e WHERE e.deleted_at IS NULL ORDER BY e.id
"""  # noqa: S608 - constant SQL text


def stats_of(totals: Totals | None, open_row: Any, now: datetime,
             cooldown: float = CIRCUIT_COOLDOWN_SECONDS) -> dict[str, Any]:
    """The wire form of one endpoint's stats."""
    totals = totals or Totals()
    state = CircuitState(open_row["circuit_opened_at"], open_row["consecutive_failures"])
    attempts = totals.attempts
    return {
        "success_rate": round(totals.successes / attempts, 4) if attempts else None,
        "attempts": attempts,
        "failures": totals.failures,
        "p50_ms": rounded_ms(percentile(totals.latency, 0.5)),
        "p95_ms": rounded_ms(percentile(totals.latency, 0.95)),
        "p99_ms": rounded_ms(percentile(totals.latency, 0.99)),
        "in_flight": int(open_row["in_flight"]),
        "pending": int(open_row["pending"]),
        "circuit": circuit_status(state, now, cooldown),
    }


async def endpoint_stats(endpoint_id: str,
                         cooldown: float = CIRCUIT_COOLDOWN_SECONDS) -> dict[str, Any]:
    now = utcnow()
    since, until = last_day(now)
    async with pooled() as connection, connection.transaction(readonly=True):
        sums = await sums_by_endpoint(connection, since, until, endpoint_id)
        await connection.execute(_INDEX_SCANS_ONLY)
        open_row = await connection.fetchrow(_OPEN_OF_ENDPOINT, OPEN_COUNT_CAP, endpoint_id)
    return stats_of(sums.get(endpoint_id), open_row, now, cooldown)


async def endpoints_health(cooldown: float = CIRCUIT_COOLDOWN_SECONDS) -> list[dict[str, Any]]:
    """The stats of every endpoint (not deleted), in id order: two statements in all."""
    now = utcnow()
    since, until = last_day(now)
    async with pooled() as connection, connection.transaction(readonly=True):
        sums = await sums_by_endpoint(connection, since, until)
        await connection.execute(_INDEX_SCANS_ONLY)
        rows = await connection.fetch(_OPEN_OF_ALL, OPEN_COUNT_CAP)
    return [{"endpoint_id": row["id"], **stats_of(sums.get(row["id"]), row, now, cooldown)}
            for row in rows]


# --- the live `stats` message ---------------------------------------------------------------------

_LIVE_OPEN = f"""
SELECT (SELECT count(*) FROM (SELECT 1 FROM delivery WHERE status IN {WAITING_SQL}
                              LIMIT {LIVE_PENDING_CAP}) AS w) AS pending,
       (SELECT count(*) FROM delivery WHERE status = '{DELIVERING}') AS in_flight
"""  # noqa: S608 - constant SQL text


@dataclass(slots=True)
class LiveWindow:
    """The last 60 seconds, estimated from two minute rows: the current minute so far and
    the previous minute weighted by the part of it still inside the window."""

    events: float
    attempts: float
    successes: float
    latency: list[float]
    pending: int
    in_flight: int


def weight(start_at: datetime, now: datetime) -> float:
    """How much of the minute starting at `start_at` lies in the 60 s before `now`."""
    current = floor_to(now, MINUTE)
    if start_at >= current:
        return 1.0
    if start_at == current - timedelta(seconds=MINUTE):
        return 1.0 - (now - current).total_seconds() / MINUTE
    return 0.0


def live_window(minutes: Sequence[Any], events: Sequence[Any], open_row: Any,
                now: datetime) -> LiveWindow:
    window = LiveWindow(0.0, 0.0, 0.0, [0.0] * BUCKETS, int(open_row["pending"]),
                        int(open_row["in_flight"]))
    for row in minutes:
        share = weight(row["start_at"], now)
        window.attempts += share * row["attempts"]
        window.successes += share * row["successes"]
        for index, count in enumerate(row["latency"]):
            window.latency[index] += share * count
    for row in events:
        window.events += weight(row["start_at"], now) * row["events"]
    return window


def live_shape(window: LiveWindow) -> dict[str, Any]:
    """The wire form of the live `stats` message: rates per second over the last minute;
    success rate and percentiles null when no attempt was made in it."""
    attempts = window.attempts
    active = attempts > 1e-9

    def ms(q: float) -> float | None:
        value = percentile(window.latency, q) if active else None
        return None if value is None else round(value, 1)

    return {
        "events_per_s": round(window.events / MINUTE, 2),
        "deliveries_per_s": round(attempts / MINUTE, 2),
        "success_rate": round(window.successes / attempts, 4) if active else None,
        "pending": window.pending,
        "in_flight": window.in_flight,
        "p50_ms": ms(0.5),
        "p95_ms": ms(0.95),
    }


async def read_live_window(connection: asyncpg.Connection, now: datetime) -> LiveWindow:
    since = floor_to(now, MINUTE) - timedelta(seconds=MINUTE)
    minutes = await connection.fetch(LIVE_MINUTES, since, TOTAL_KEYS)
    events = await connection.fetch(LIVE_EVENTS, since)
    await connection.execute(_INDEX_SCANS_ONLY)
    open_row = await connection.fetchrow(_LIVE_OPEN)
    return live_window(minutes, events, open_row, now)


async def live_stats(now: datetime | None = None) -> dict[str, Any]:
    async with pooled() as connection, connection.transaction(readonly=True):
        window = await read_live_window(connection, now or utcnow())
    return live_shape(window)

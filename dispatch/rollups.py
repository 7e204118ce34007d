"""Rolled-up aggregates: attempts per endpoint and events per source, per minute and per
hour (tables `endpoint_rollup` and `source_rollup`, migration 0006).

Writers add counts with one `INSERT … ON CONFLICT DO UPDATE` per batch: the settle writer
for attempts (`COUNT_ATTEMPTS`, part of its write, so a rollup counts exactly the
attempts that were committed), the router for events (inside its routing statement, so an
event is counted by the one statement that marks it routed). Rows go in key order, so two
dispatchers that upsert the same rows take their locks in the same order.

Besides a row per endpoint, each writer adds its attempts to a total row under the key
`*<shard>` (TOTAL_KEYS; a dispatcher picks one shard for its lifetime), so that the
figures of all endpoints together (the live message, series without `endpoint`) read a
few rows per minute, not one per endpoint. A shard row is upserted last, just before the
settle commits, and two dispatchers sharing a shard only wait for each other's commit:
the endpoint rows each settle updates are those it has already locked.

Readers sum rows over a window made of whole minutes, using the hour rows for the whole
hours inside it, so a 24-hour read touches at most 23 hour rows and 118 minute rows per
endpoint whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from django.conf import settings

from dispatch.latency import BUCKETS, bucket_of
from dispatch.queue import pooled

MINUTE = 60
HOUR = 3600
SPANS = (MINUTE, HOUR)
TOTAL_SHARDS = 4
TOTAL_KEYS = [f"*{shard}" for shard in range(TOTAL_SHARDS)]
"""Keys of the all-endpoint total rows (they sort before every endpoint id)."""


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_to(moment: datetime, seconds: int) -> datetime:
    """The start of the `seconds`-long period (aligned on the epoch, in UTC) holding `moment`
    (exact to the microsecond: no float on the way)."""
    if moment.tzinfo is UTC:  # every attempt's start: minutes and hours by truncation
        if seconds == MINUTE:
            return moment.replace(second=0, microsecond=0)
        if seconds == HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
    span = timedelta(seconds=seconds)
    return EPOCH + (moment - EPOCH) // span * span


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code <= 299


# --- writing attempts ---------------------------------------------------------------------------


@dataclass(slots=True)
class AttemptFacts:
    """What a rollup needs of one attempt."""

    endpoint_id: str
    started_at: datetime
    status_code: int | None
    duration_ms: float


@dataclass(slots=True)
class RollupRow:
    endpoint_id: str
    span: int
    start_at: datetime
    attempts: int = 0
    successes: int = 0
    failures: int = 0
    duration_ms_sum: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)


def roll_up(attempts: Iterable[AttemptFacts], total_key: str | None = None) -> list[RollupRow]:
    """The minute and hour rows that a batch of attempts adds, per endpoint and (with
    `total_key`) for all endpoints together; the total rows come last, the others in key
    order."""
    rows: dict[tuple[str, int, datetime], RollupRow] = {}
    for attempt in attempts:
        bucket = bucket_of(attempt.duration_ms)
        success = is_success(attempt.status_code)
        keys = [attempt.endpoint_id] if total_key is None else [attempt.endpoint_id, total_key]
        starts = [(span, floor_to(attempt.started_at, span)) for span in SPANS]
        for endpoint_id in keys:
            for span, start in starts:
                row = rows.get((endpoint_id, span, start))
                if row is None:
                    row = rows[(endpoint_id, span, start)] = RollupRow(endpoint_id, span, start)
                row.attempts += 1
                row.successes += success
                row.failures += not success
                row.duration_ms_sum += attempt.duration_ms
                row.latency[bucket] += 1
    return [rows[key] for key in sorted(rows, key=lambda key: (key[0] == total_key, key))]


_ADD_LATENCY = ", ".join(f"r.latency[{i}] + excluded.latency[{i}]" for i in range(1, BUCKETS + 1))

_UPSERT_ATTEMPTS = f"""
INSERT INTO endpoint_rollup AS r (endpoint_id, span, start_at, attempts, successes, failures,
                                  duration_ms_sum, latency)
SELECT v.endpoint_id, v.span, v.start_at, v.attempts, v.successes, v.failures, v.duration,
       v.latency::integer[]
FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::int[],
            $7::float8[], $8::text[]) WITH ORDINALITY
     AS v(endpoint_id, span, start_at, attempts, successes, failures, duration, latency, ord)
ORDER BY v.ord
ON CONFLICT (endpoint_id, span, start_at) DO UPDATE
SET attempts = r.attempts + excluded.attempts,
    successes = r.successes + excluded.successes,
    failures = r.failures + excluded.failures,
    duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum,
    latency = ARRAY[{_ADD_LATENCY}]
"""  # noqa: S608 - generated from constants; values are bound


COUNT_ATTEMPTS = _UPSERT_ATTEMPTS
"""Adds a batch of attempts to the rollups; its 8 parameters are `count_attempts_args`.
Part of the settle's write (dispatch.settle), after the endpoint rows are locked."""


def count_attempts_args(attempts: Sequence[AttemptFacts],
                        total_key: str | None = None) -> list[list[Any]]:
    rows = roll_up(attempts, total_key)
    return [
        [row.endpoint_id for row in rows], [row.span for row in rows],
        [row.start_at for row in rows], [row.attempts for row in rows],
        [row.successes for row in rows], [row.failures for row in rows],
        [row.duration_ms_sum for row in rows],
        ["{" + ",".join(map(str, row.latency)) + "}" for row in rows],
    ]


# --- counting events (a part of the routing statement) -------------------------------------------

COUNT_ROUTED_EVENTS = """
INSERT INTO source_rollup AS r (source, span, start_at, events)
SELECT coalesce(m.source_slug, ''), s.span,
       to_timestamp(floor(extract(epoch FROM m.received_at) / s.span) * s.span), count(*)
FROM marked AS m CROSS JOIN (VALUES (60), (3600)) AS s(span)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (source, span, start_at) DO UPDATE SET events = r.events + excluded.events
"""
"""A data-modifying CTE for a statement whose CTE `marked` returns the events it routed
(`source_slug`, `received_at`): adds them to their source's minute and hour. Events
published through the API (no source) count under the source ''."""


# --- windows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Piece:
    """Rows of one span whose start is in [since, until)."""

    span: int
    since: datetime
    until: datetime


def pieces(since: datetime, until: datetime) -> list[Piece]:
    """The rows that cover [since, until) (both whole minutes): hour rows for every whole
    hour inside, minute rows for the rest."""
    first_hour = floor_to(since + timedelta(seconds=HOUR - 1), HOUR)
    last_hour = floor_to(until, HOUR)
    if first_hour >= last_hour:
        return [Piece(MINUTE, since, until)]
    parts = [Piece(MINUTE, since, first_hour), Piece(HOUR, first_hour, last_hour),
             Piece(MINUTE, last_hour, until)]
    return [part for part in parts if part.since < part.until]


def last_day(now: datetime) -> tuple[datetime, datetime]:
    """The stats window: the 24 hours before the current minute, plus that minute so far."""
    current = floor_to(now, MINUTE)
    return current - timedelta(hours=24), current + timedelta(seconds=MINUTE)


def window_bounds(since: datetime, until: datetime) -> list[datetime]:
    """The six bounds `_WINDOW` takes: minutes, hours, minutes (empty ranges where a piece
    is missing)."""
    minutes = [part for part in pieces(since, until) if part.span == MINUTE]
    hours = [part for part in pieces(since, until) if part.span == HOUR]
    head = minutes[0] if minutes and (not hours or minutes[0].until <= hours[0].since) else None
    tail = next((part for part in minutes if part is not head), None)
    bounds: list[datetime] = []
    for part in (head, hours[0] if hours else None, tail):
        bounds += [part.since, part.until] if part is not None else [since, since]
    return bounds


_LATENCY_SUMS = "ARRAY[" + ", ".join(
    f"coalesce(sum(r.latency[{i}]), 0)" for i in range(1, BUCKETS + 1)) + "]::bigint[]"

_WINDOW = """
FROM endpoint_rollup AS r
WHERE ((r.span = 60 AND r.start_at >= $1 AND r.start_at < $2)
       OR (r.span = 3600 AND r.start_at >= $3 AND r.start_at < $4)
       OR (r.span = 60 AND r.start_at >= $5 AND r.start_at < $6))
"""
"""Rows of the three pieces of a window (minutes, hours, minutes; some maybe empty), as
ranges the indexes can use."""

_SUMS_BY_ENDPOINT = f"""
SELECT r.endpoint_id, sum(r.attempts)::bigint AS attempts,
       sum(r.successes)::bigint AS successes, sum(r.failures)::bigint AS failures,
       {_LATENCY_SUMS} AS latency
{_WINDOW}
  AND {{which}}
GROUP BY r.endpoint_id
"""
SUMS_BY_ENDPOINT = _SUMS_BY_ENDPOINT.format(which="r.endpoint_id NOT LIKE '*%'")
"""Totals and summed histograms per endpoint over a window ($1-$6)."""
SUMS_OF_ENDPOINT = _SUMS_BY_ENDPOINT.format(which="r.endpoint_id = $7")
"""The same for one endpoint ($7). A separate text, not `$7 IS NULL OR …`: a prepared
statement's generic plan could not use the index for that."""


@dataclass(slots=True)
class Totals:
    attempts: int = 0
    successes: int = 0
    failures: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)


def totals_from(row: Any) -> Totals:
    return Totals(int(row["attempts"]), int(row["successes"]), int(row["failures"]),
                  [int(n) for n in row["latency"]])


async def sums_by_endpoint(connection: asyncpg.Connection, since: datetime, until: datetime,
                           endpoint_id: str | None = None) -> dict[str, Totals]:
    bounds = window_bounds(since, until)
    if endpoint_id is None:
        rows = await connection.fetch(SUMS_BY_ENDPOINT, *bounds)
    else:
        rows = await connection.fetch(SUMS_OF_ENDPOINT, *bounds, endpoint_id)
    return {row["endpoint_id"]: totals_from(row) for row in rows}


# --- series -------------------------------------------------------------------------------------

_SERIES = """
SELECT floor(extract(epoch FROM r.start_at - $2::timestamptz) / $4)::int AS point, {columns}
FROM {table} AS r
WHERE r.span = $1 AND r.start_at >= $2 AND r.start_at < $3 {narrow}
GROUP BY 1
"""
"""Sums per point of a series: rows of span $1 in [$2, $3), point = (start - $2) // $4,
of one endpoint or source ($5), or of the total rows (TOTAL_KEYS as $5) for all endpoints."""

_ATTEMPT_COUNTS = ("sum(r.attempts)::bigint AS attempts, sum(r.successes)::bigint AS successes,"
                   " sum(r.failures)::bigint AS failures")


def series_sql(table: str, with_latency: bool, narrowed: bool) -> str:
    if table == "source_rollup":
        columns, key = "sum(r.events)::bigint AS events", "source"
    else:
        columns, key = _ATTEMPT_COUNTS, "endpoint_id"
        if with_latency:
            columns += f", {_LATENCY_SUMS} AS latency"
    if narrowed:
        narrow = f"AND r.{key} = $5"
    elif table == "endpoint_rollup":
        narrow = "AND r.endpoint_id = ANY($5::text[])"
    else:
        narrow = ""
    return _SERIES.format(columns=columns, table=table, narrow=narrow)


# --- the live window ----------------------------------------------------------------------------

LIVE_MINUTES = f"""
SELECT r.start_at, sum(r.attempts)::bigint AS attempts, sum(r.successes)::bigint AS successes,
       sum(r.failures)::bigint AS failures, {_LATENCY_SUMS} AS latency
FROM endpoint_rollup AS r
WHERE r.endpoint_id = ANY($2::text[]) AND r.span = 60 AND r.start_at >= $1
GROUP BY r.start_at
"""  # noqa: S608 - generated from constants; values are bound

LIVE_EVENTS = """
SELECT r.start_at, sum(r.events)::bigint AS events
FROM source_rollup AS r
WHERE r.span = 60 AND r.start_at >= $1
GROUP BY r.start_at
"""


# --- retention ----------------------------------------------------------------------------------

_PRUNE = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE span = $1 AND start_at < $2 LIMIT $3))
"""


async def prune(connection: asyncpg.Connection, before: datetime,
                batch_size: int = 10_000) -> int:
    """Delete the rollup rows of periods that started before `before`, in short batches."""
    removed = 0
    for table in ("endpoint_rollup", "source_rollup"):
        for span in SPANS:
            while True:
                status = await connection.execute(_PRUNE.format(table=table), span, before,
                                                  batch_size)
                count = int(status.split()[-1])
                removed += count
                if count < batch_size:
                    break
    return removed


async def prune_expired(days: int | None = None) -> int:
    """The daily pruning step: drop rollup rows older than RELAY_ROLLUP_RETENTION_DAYS."""
    days = settings.RELAY_ROLLUP_RETENTION_DAYS if days is None else days
    async with pooled() as connection:
        return await prune(connection, datetime.now(UTC) - timedelta(days=days))

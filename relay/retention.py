"""Retention: delete what is older than RELAY_RETENTION_DAYS, in short batches.

An event goes, with its deliveries and their attempts, once it is older than the
retention and every one of its deliveries is final (`succeeded`, `failed`,
`cancelled`). An event with a delivery still `pending`, `retrying` or `delivering`
stays, and so does an event the dispatcher has not routed yet. Refused requests go
after 7 days.

Each batch is one short transaction that locks only the rows it deletes, so ingest
and the dispatchers go on meanwhile, and two purges (one per dispatcher) share the
work instead of colliding (`SKIP LOCKED`). Locks are not the only cost, though:
deleting is CPU, WAL and I/O for PostgreSQL, taken from ingest. So the purge works
only a `share` of the time: after a batch that took t seconds it rests
t * (1 - share) / share. A duty cycle, not a fixed pause, because batches slow down
as tables and indexes grow and speed up on a big server; the rest follows.

The statements name the tables directly (event, delivery, attempt, rejected_request):
relay/ imports no domain model, and purging is bulk SQL anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from tortoise import connections
from tortoise.transactions import in_transaction

from relay.ids import _encode

log = logging.getLogger("relay.retention")

REJECTED_RETENTION_DAYS = 7
DEFAULT_BATCH_SIZE = 5000
DEFAULT_SHARE = 0.1
"""The part of the time the purge spends deleting. Measured with bench/purge.py against
10 M expired events on 2 shared cores (PostgreSQL, Relay and the load generator on the
same cores): ingest kept 1.02 of its rate at 0.1 (≈ 1,700 events purged a second) and
0.88 flat out (share 1, ≈ 34,000 a second)."""
ACTIVE_STATUSES = ("pending", "retrying", "delivering")
_ACTIVE_SQL = "('pending', 'retrying', 'delivering')"

_SELECT_EXPIRED_EVENTS = f"""
SELECT e.id, e.received_at FROM event e
WHERE e.received_at < $1 AND e.routed_at IS NOT NULL
  AND e.received_at >= $2::timestamptz AND (e.received_at, e.id) > ($2::timestamptz, $3::text)
  AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = e.id AND d.status IN {_ACTIVE_SQL})
ORDER BY e.received_at, e.id
LIMIT $4
"""  # noqa: S608 - constants only; values are bound

_LOCK_DELIVERIES = "SELECT 1 FROM delivery WHERE event_id = ANY($1::text[]) FOR UPDATE"

# Runs after the deliveries are locked, so a delivery put back to `pending` (retry,
# recover) just before is seen here, and keeps its event.
_DELETE_EVENTS = f"""
WITH keep AS (
  SELECT DISTINCT event_id FROM delivery
  WHERE event_id = ANY($1::text[]) AND status IN {_ACTIVE_SQL}
), doomed AS (
  SELECT id FROM unnest($1::text[]) AS id WHERE id NOT IN (SELECT event_id FROM keep)
), gone_deliveries AS (
  DELETE FROM delivery d USING doomed WHERE d.event_id = doomed.id RETURNING d.id
), gone_attempts AS (
  DELETE FROM attempt a USING gone_deliveries g WHERE a.delivery_id = g.id RETURNING 1
), gone_events AS (
  DELETE FROM event e USING doomed WHERE e.id = doomed.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone_events) AS events,
       (SELECT count(*) FROM gone_deliveries) AS deliveries,
       (SELECT count(*) FROM gone_attempts) AS attempts
"""  # noqa: S608 - constants only; values are bound

_COUNT_RELATED = """
SELECT (SELECT count(*) FROM delivery WHERE event_id = ANY($1::text[])) AS deliveries,
       (SELECT count(*) FROM attempt a JOIN delivery d ON a.delivery_id = d.id
         WHERE d.event_id = ANY($1::text[])) AS attempts
"""

# Ids sort by creation time, so the primary key finds old refused requests.
_DELETE_REJECTED = """
DELETE FROM rejected_request WHERE id IN (
  SELECT id FROM rejected_request WHERE id < $1 AND received_at < $2 LIMIT $3
  FOR UPDATE SKIP LOCKED)
"""
_COUNT_REJECTED = "SELECT count(*) AS n FROM rejected_request WHERE id < $1 AND received_at < $2"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Say = Callable[[str], None]


def id_boundary(prefix: str, moment: datetime) -> str:
    """The smallest id of type `prefix` created at `moment`: every older id sorts below it."""
    return f"{prefix}_{_encode(int(moment.timestamp() * 1000), 10)}"


def rest_after(work_seconds: float, share: float) -> float:
    """Seconds to rest after `work_seconds` of work so that work is `share` of the time."""
    return work_seconds * (1 - share) / share


class _Throttle:
    """Times each batch (`async with`) and rests in proportion (`rest()`)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.worked = 0.0
        self._started = 0.0

    async def __aenter__(self) -> None:
        self._started = time.monotonic()

    async def __aexit__(self, *exc_info: object) -> None:
        self.worked = time.monotonic() - self._started

    async def rest(self) -> None:
        if self.share < 1:
            await asyncio.sleep(rest_after(self.worked, self.share))


class _Progress:
    """Says how far a table has got, at most every `every` seconds."""

    def __init__(self, say: Say | None, every: float = 2.0) -> None:
        self.say = say
        self.every = every
        self.started = self.last = time.monotonic()

    def tick(self, what: str, count: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.say is None or (not final and now - self.last < self.every):
            return
        self.last = now
        rate = count / max(now - self.started, 1e-6)
        self.say(f"  {what}: {count:,} {'done' if final else 'so far'} ({rate:,.0f}/s)")


async def purge_expired(
    days: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    say: Say | None = None,
    share: float = DEFAULT_SHARE,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Delete (or with `dry_run` count) what has expired; returns what it removed.

    `{"events", "deliveries", "attempts", "rejected_requests", "cutoff",
    "rejected_cutoff", "dry_run", "seconds"}`. `share` (0 < share <= 1) is the part
    of the time spent deleting; the rest leaves the database to live traffic.
    """
    days = settings.RELAY_RETENTION_DAYS if days is None else days
    if days < 1:
        raise ValueError("the retention must be at least 1 day")
    if batch_size < 1:
        raise ValueError("the batch size must be at least 1")
    if not 0 < share <= 1:
        raise ValueError("the share must be more than 0 and at most 1")
    now = now or datetime.now(UTC)
    started = time.monotonic()
    cutoff = now - timedelta(days=days)
    rejected_cutoff = now - timedelta(days=REJECTED_RETENTION_DAYS)
    report: dict[str, Any] = {
        "events": 0, "deliveries": 0, "attempts": 0, "rejected_requests": 0,
        "cutoff": cutoff.isoformat(), "rejected_cutoff": rejected_cutoff.isoformat(),
        "dry_run": dry_run,
    }
    if say:
        verb = "Counting" if dry_run else "Deleting"
        say(f"{verb} events received before {cutoff:%Y-%m-%d %H:%M} UTC whose deliveries are "
            f"all final, with their deliveries and attempts ...")
    progress = _Progress(say)
    throttle = _Throttle(share)
    cursor: tuple[datetime, str] = (_EPOCH, "")
    while True:
        async with throttle:
            if dry_run:
                cursor, counts = await _count_batch(cutoff, cursor, batch_size)
            else:
                cursor, counts = await _delete_batch(cutoff, cursor, batch_size)
        if counts is None:
            break
        for key in ("events", "deliveries", "attempts"):
            report[key] += counts[key]
        progress.tick("events", report["events"])
        await throttle.rest()
    progress.tick("events", report["events"], final=True)

    if say:
        say(f"{'Counting' if dry_run else 'Deleting'} refused requests received before "
            f"{rejected_cutoff:%Y-%m-%d %H:%M} UTC ...")
    report["rejected_requests"] = await _purge_rejected(rejected_cutoff, batch_size, dry_run,
                                                        throttle)
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


async def _select_batch(connection: Any, cutoff: datetime, cursor: tuple[datetime, str],
                        limit: int) -> list[dict[str, Any]]:
    _, rows = await connection.execute_query(_SELECT_EXPIRED_EVENTS,
                                             [cutoff, cursor[0], cursor[1], limit])
    return rows


async def _delete_batch(cutoff: datetime, cursor: tuple[datetime, str], limit: int
                        ) -> tuple[tuple[datetime, str], dict[str, int] | None]:
    async with in_transaction("default") as connection:
        rows = await _select_batch(connection, cutoff, cursor, limit)
        if not rows:
            return cursor, None
        ids = [row["id"] for row in rows]
        await connection.execute_query(_LOCK_DELIVERIES, [ids])
        _, counts = await connection.execute_query(_DELETE_EVENTS, [ids])
    return (rows[-1]["received_at"], rows[-1]["id"]), dict(counts[0])


async def _count_batch(cutoff: datetime, cursor: tuple[datetime, str], limit: int
                       ) -> tuple[tuple[datetime, str], dict[str, int] | None]:
    connection = connections.get("default")
    rows = await _select_batch(connection, cutoff, cursor, limit)
    if not rows:
        return cursor, None
    ids = [row["id"] for row in rows]
    _, related = await connection.execute_query(_COUNT_RELATED, [ids])
    return (rows[-1]["received_at"], rows[-1]["id"]), {"events": len(rows), **dict(related[0])}


async def _purge_rejected(cutoff: datetime, batch_size: int, dry_run: bool,
                          throttle: _Throttle) -> int:
    connection = connections.get("default")
    boundary = id_boundary("rej", cutoff)
    if dry_run:
        _, rows = await connection.execute_query(_COUNT_REJECTED, [boundary, cutoff])
        return int(rows[0]["n"])
    removed = 0
    while True:
        async with throttle:
            count, _ = await connection.execute_query(_DELETE_REJECTED,
                                                      [boundary, cutoff, batch_size])
        removed += count
        if count < batch_size:
            return removed
        await throttle.rest()


def describe(report: dict[str, Any]) -> str:
    verb = "Would remove" if report["dry_run"] else "Removed"
    return (f"{verb} {report['events']:,} events, {report['deliveries']:,} deliveries, "
            f"{report['attempts']:,} attempts and {report['rejected_requests']:,} refused "
            f"requests in {report.get('seconds', 0):.1f} s.")


DAY_SECONDS = 24 * 3600.0


PurgeStep = Callable[[], Awaitable[object]]


def start_daily_purge(interval_seconds: float = DAY_SECONDS,
                      first_run_after: float | None = None,
                      share: float = DEFAULT_SHARE,
                      also: Sequence[PurgeStep] = ()) -> asyncio.Task:
    """Run `purge_expired` in this process every day, then each step of `also` (the apps'
    own pruning); returns the task (cancel it to stop).

    The first run waits 5 to 15 minutes (random) so that restarts and several
    dispatchers do not all purge at the same moment; a failed run is logged and the
    next one happens on schedule.
    """
    delay = random.uniform(300, 900) if first_run_after is None else first_run_after

    async def loop() -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                report = await purge_expired(say=None, share=share)
                log.info("retention: %s", describe(report), extra={
                    key: report[key] for key in ("events", "deliveries", "attempts",
                                                 "rejected_requests")})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention: the daily purge failed; it will run again in %.0f s",
                              interval_seconds)
            for step in also:
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("retention: a daily pruning step failed; it will run "
                                  "again in %.0f s", interval_seconds)
            await asyncio.sleep(interval_seconds)

    return asyncio.get_running_loop().create_task(loop(), name="relay-daily-purge")

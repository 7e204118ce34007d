"""Retention: remove what is older than RELAY_RETENTION_DAYS.

An event goes, with its deliveries and their attempts, once its whole UTC day is older
than the retention (so rows are kept between RELAY_RETENTION_DAYS days and one day more)
and every one of its deliveries is final (`succeeded`, `failed`,
`cancelled`). An event with a delivery still `pending`, `retrying` or `delivering`
stays, and so does an event the dispatcher has not routed yet. Refused requests go
after 7 days.

Two steps (kernel/partitions.py explains the daily partitions):

1. Whole days. A day whose partitions (`event_pYYYYMMDD`, `delivery_p…`, `attempt_p…`)
   are all past the retention is dropped in one short transaction: the rows it must
   keep (active deliveries, every delivery and attempt of an event that has one, their
   events, unrouted events) are copied into the default partitions first, so dropping
   loses nothing still in flight. The cost is the kept rows, not the day's size. A day
   that would keep more than `MOVE_LIMIT` rows stays whole for now and step 2 thins it.
   Refused requests' days go at 7 days, whole.
2. Rows. What is left past the retention (the default partitions, days kept whole) is
   deleted in short batches, the way it was before partitions.

Each batch of step 2 is one short transaction that locks only the rows it deletes, so
ingest and the dispatchers go on meanwhile, and two purges (one per dispatcher) share
the work instead of colliding (`SKIP LOCKED`). Deleting is CPU, WAL and I/O taken from
ingest, so step 2 works only a `share` of the time: after a batch that took t seconds
it rests t * (1 - share) / share. Step 1 rests the same way between two days (a backlog
of thirty days is not dropped in one burst of CPU and I/O), and locks the three tables for
the moment of each drop (a bounded wait, `lock_timeout`, retried), which ingest feels as a
pause of a few milliseconds.

The statements name the tables directly (event, delivery, attempt, rejected_request):
this module is part of the wiring, which composes the apps, and purging is bulk SQL
anyway; the delivery states come from dispatch/states.py. The apps' own pruning (the
rollups) is handed in by the wiring (`start_daily_purge(also=...)`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from django.conf import settings
from tortoise import connections

from dispatch.states import ACTIVE, ACTIVE_SQL
from kernel import partitions
from kernel.ids import id_boundary

log = logging.getLogger("relay.retention")

REJECTED_RETENTION_DAYS = 7
DEFAULT_BATCH_SIZE = 5000
DEFAULT_SHARE = 0.1
"""The part of the time the purge spends deleting; what it costs ingest is measured by
bench/purge.py (docs/benchmarks.md, "Retention purge")."""
ACTIVE_STATUSES = ACTIVE
_ACTIVE_SQL = ACTIVE_SQL

_SELECT_EXPIRED_EVENTS = f"""
SELECT e.id, e.received_at FROM event e
WHERE e.received_at < $1
  AND NOT EXISTS (SELECT 1 FROM event_unrouted u WHERE u.event_id = e.id)
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
_COUNT_REJECTED = """
SELECT count(*) AS n FROM rejected_request WHERE id < $1 AND received_at < $2 AND id >= $3
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Say = Callable[[str], None]

MOVE_LIMIT = 100_000
"""A day keeping more rows than this (say a disabled endpoint's parked deliveries) is not
dropped: moving them would hold the tables locked too long. Step 2 deletes its final
rows instead, and a later purge drops the day once few rows are left to keep."""
LOCK_TIMEOUT = "500ms"
"""Below PostgreSQL's deadlock_timeout (1 s): should the purge and a dispatcher wait on
each other, the purge gives up first and retries, the dispatcher's work goes through."""
LOCK_TRIES = 5

_ACTIVE_EVENTS = f"""
CREATE TEMP TABLE relay_active_event ON COMMIT DROP AS
SELECT DISTINCT event_id AS id FROM delivery
WHERE status IN {_ACTIVE_SQL} AND event_id < $1
"""  # noqa: S608 - constants only
"""Events up to the end of the day ($1: the first event id of the next day) with a delivery
in flight, wherever the delivery is stored. A delivery is made after its event, so the
day's deliveries and attempts belong to these events or to none in flight; the range of
the partial `delivery_open_event_idx` leaves out everything in flight from later days,
which is most of it when old days are purged."""


_NEWLY_ACTIVE = f"""
SELECT EXISTS (SELECT 1 FROM delivery WHERE status IN {_ACTIVE_SQL}
               AND event_id >= $1 AND event_id < $2
               AND event_id NOT IN (SELECT id FROM relay_keep_event))
"""  # noqa: S608 - constants only
"""Under the exclusive lock: a delivery of the day's events in flight that was not when
the rows to keep were copied (partial index `delivery_open_event_idx`)."""


def _keep_statements(day: date) -> list[tuple[str, str]]:
    """(temp table, statement) copying the rows of `day` that must survive its drop."""
    event = partitions.partition_name("event", day)
    delivery = partitions.partition_name("delivery", day)
    attempt = partitions.partition_name("attempt", day)
    return [
        ("relay_keep_event", f"""
CREATE TEMP TABLE relay_keep_event ON COMMIT DROP AS
SELECT * FROM {event} WHERE id IN (SELECT id FROM relay_active_event)
UNION ALL
SELECT * FROM {event} WHERE id IN (SELECT event_id FROM event_unrouted)
  AND id NOT IN (SELECT id FROM relay_active_event)
"""),  # noqa: S608 - partition names made here
        ("relay_keep_delivery", f"""
CREATE TEMP TABLE relay_keep_delivery ON COMMIT DROP AS
SELECT * FROM {delivery} WHERE event_id IN (SELECT id FROM relay_active_event)
"""),  # noqa: S608 - partition names made here
        ("relay_keep_attempt", f"""
CREATE TEMP TABLE relay_keep_attempt ON COMMIT DROP AS
SELECT * FROM {attempt} WHERE delivery_id IN (
  SELECT d.id FROM delivery d WHERE d.event_id IN (SELECT id FROM relay_active_event))
"""),  # noqa: S608 - partition names made here
    ]


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
    # Midnight (UTC) before: a day goes whole once all of it is past the retention, never
    # row by row while it is partly past (a day can hold 86 M events).
    cutoff = partitions.day_start((now - timedelta(days=days)).date())
    rejected_cutoff = partitions.day_start((now - timedelta(days=REJECTED_RETENTION_DAYS)).date())
    report: dict[str, Any] = {
        "events": 0, "deliveries": 0, "attempts": 0, "rejected_requests": 0,
        "cutoff": cutoff.isoformat(), "rejected_cutoff": rejected_cutoff.isoformat(),
        "dry_run": dry_run, "days_dropped": 0, "days_kept": 0,
    }
    report["counted_days"] = set()
    if say:
        say(f"{'Counting' if dry_run else 'Dropping'} whole days before "
            f"{cutoff:%Y-%m-%d %H:%M} UTC (refused requests: before "
            f"{rejected_cutoff:%Y-%m-%d %H:%M} UTC) ...")
    await _drop_expired_days(cutoff, rejected_cutoff, dry_run, report, say,
                             _Throttle(share))
    if say:
        verb = "Counting" if dry_run else "Deleting"
        say(f"{verb} events received before {cutoff:%Y-%m-%d %H:%M} UTC whose deliveries are "
            f"all final, with their deliveries and attempts ...")
    progress = _Progress(say)
    throttle = _Throttle(share)
    cursor: tuple[datetime, str] = (_EPOCH, "")
    rows = {"events": 0, "deliveries": 0, "attempts": 0}
    while True:
        async with throttle:
            if dry_run:
                cursor, counts = await _count_batch(cutoff, cursor, batch_size,
                                                    report["counted_days"])
            else:
                cursor, counts = await _delete_batch(cutoff, cursor, batch_size)
        if counts is None:
            break
        for key in ("events", "deliveries", "attempts"):
            report[key] += counts[key]
            rows[key] += counts[key]
        progress.tick("events", rows["events"])
        await throttle.rest()
    progress.tick("events", rows["events"], final=True)

    if say:
        say(f"{'Counting' if dry_run else 'Deleting'} refused requests received before "
            f"{rejected_cutoff:%Y-%m-%d %H:%M} UTC ...")
    report["rejected_requests"] += await _purge_rejected(
        rejected_cutoff, batch_size, dry_run, throttle, report.get("rejected_counted_below", ""))
    report["seconds"] = round(time.monotonic() - started, 3)
    report.pop("counted_days")
    report.pop("rejected_counted_below", None)
    return report


_DAY_TABLES = ("event", "delivery", "attempt")
_COUNT_KEYS = {"event": "events", "delivery": "deliveries", "attempt": "attempts",
               "rejected_request": "rejected_requests"}


async def _existing(connection: Any, names: list[str]) -> list[str]:
    rows = await connection.fetch("SELECT n FROM unnest($1::text[]) AS n"
                                  " WHERE to_regclass(n) IS NOT NULL", names)
    return [row["n"] for row in rows]


EXACT_COUNT_LIMIT = 100_000
"""A day partition is counted exactly up to this many rows; past it, the report gives
PostgreSQL's estimate (`pg_class.reltuples`). Counting a busy day exactly would read all of
it, tens of millions of rows, only to print a number, and a purge must cost ingest little."""


async def _count(connection: Any, name: str) -> int:
    counted = int(await connection.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT {EXACT_COUNT_LIMIT + 1}) AS s",  # noqa: S608
        timeout=partitions.LONG_STATEMENT_TIMEOUT))
    if counted <= EXACT_COUNT_LIMIT:
        return counted
    estimate = await connection.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", name)
    return max(counted, int(estimate or 0))


async def expired_days(connection: Any, table: str, cutoff: datetime) -> list[date]:
    """The days of `table` whose partition holds only rows created before `cutoff`."""
    return [part.day for part in await partitions.day_partitions(connection, table)
            if partitions.day_start(part.day + timedelta(days=1)) <= cutoff]


async def drop_day(connection: Any, day: date, tables: tuple[str, ...] = _DAY_TABLES,
                   dry_run: bool = False) -> dict[str, int] | None:
    """Drop `tables`' partitions of `day`, moving what must be kept to the default
    partitions first; returns the rows removed per table, or None when the day was kept
    whole (too many rows to keep, or the tables stayed busy)."""
    names = await _existing(connection, [partitions.partition_name(t, day) for t in tables])
    present = tuple(t for t in tables if partitions.partition_name(t, day) in names)
    if not present:
        return {}
    totals = {t: await _count(connection, partitions.partition_name(t, day)) for t in present}
    if dry_run:
        return totals
    for attempt_number in range(1, LOCK_TRIES + 1):
        try:
            return await _drop_day_once(connection, day, present, totals)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            log.info("retention: the tables were busy; dropping day %s again (try %d of %d)",
                     day, attempt_number, LOCK_TRIES)
            await asyncio.sleep(random.uniform(0.5, 2.0))
    log.warning("retention: the tables stayed busy; day %s is kept for the next purge", day)
    return None


async def _drop_day_once(connection: Any, day: date, tables: tuple[str, ...],
                         totals: dict[str, int]) -> dict[str, int] | None:
    async with connection.transaction():
        await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await connection.execute("SELECT pg_advisory_xact_lock($1)", partitions._UPKEEP_LOCK)
        if not await _existing(connection, [partitions.partition_name(tables[0], day)]):
            return {}  # another purge dropped it meanwhile
        names = [partitions.partition_name(t, day) for t in tables]
        # First only the day's own partitions, against writes: ingest (today's partitions)
        # goes on while the rows to keep are copied aside.
        await connection.execute(f"LOCK TABLE {', '.join(names)} IN SHARE MODE")
        kept: dict[str, int] = {}
        if "event" in tables or "delivery" in tables or "attempt" in tables:
            await connection.execute(_ACTIVE_EVENTS, partitions.day_bounds("event", day)[1],
                                     timeout=partitions.LONG_STATEMENT_TIMEOUT)
            await connection.execute("ANALYZE relay_active_event")
            for temp, statement in _keep_statements(day):
                table = temp.removeprefix("relay_keep_")
                if table not in tables:
                    continue
                result = await connection.execute(statement,
                                                  timeout=partitions.LONG_STATEMENT_TIMEOUT)
                kept[table] = int(result.split()[-1])
        if sum(kept.values()) > MOVE_LIMIT:
            log.info("retention: day %s keeps %s rows in flight; kept whole for now", day,
                     f"{sum(kept.values()):,}")
            raise _KeepWhole
        # Then the tables, for the drop itself: milliseconds. A delivery of this day's
        # events stored in a later day and put back in flight meanwhile (recover) makes
        # the day wait for the next purge.
        await connection.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        if "event" in tables and await connection.fetchval(
                _NEWLY_ACTIVE, *partitions.day_bounds("event", day)):
            raise _KeepWhole
        await connection.execute("DROP TABLE " + ", ".join(names))
        for table, count in kept.items():
            if count:
                await connection.execute(
                    f"INSERT INTO {table} SELECT * FROM relay_keep_{table}",  # noqa: S608
                    timeout=partitions.LONG_STATEMENT_TIMEOUT)
    return {table: totals[table] - kept.get(table, 0) for table in tables}


class _KeepWhole(Exception):
    """Rolls the drop back: the day keeps too many rows to move."""


async def _drop_expired_days(cutoff: datetime, rejected_cutoff: datetime, dry_run: bool,
                             report: dict[str, Any], say: Say | None,
                             throttle: _Throttle) -> None:
    async with connections.get("default").acquire_connection() as connection:
        if not dry_run:
            await partitions.ensure_partitions(connection)
        groups = [(_DAY_TABLES, cutoff), (("rejected_request",), rejected_cutoff)]
        for tables, limit in groups:
            day_set: set[date] = set()
            for table in tables:
                day_set.update(await expired_days(connection, table, limit))
            for number, day in enumerate(sorted(day_set)):
                if number:
                    await throttle.rest()
                try:
                    async with throttle:
                        removed = await drop_day(connection, day, tables, dry_run)
                except _KeepWhole:
                    removed = None
                if removed is None:
                    report["days_kept"] += 1
                    continue
                report["days_dropped"] += 1
                if dry_run and "event" in tables:
                    report["counted_days"].add(day)
                elif dry_run:
                    report["rejected_counted_below"] = partitions.day_bounds(
                        "rejected_request", day)[1]
                for table, count in removed.items():
                    report[_COUNT_KEYS[table]] += count
                if say and any(removed.values()):
                    verb = "would drop" if dry_run else "dropped"
                    say(f"  day {day}: {verb} " + ", ".join(
                        f"{count:,} {_COUNT_KEYS[table].replace('_', ' ')}"
                        for table, count in removed.items()))


_T = partitions.LONG_STATEMENT_TIMEOUT
"""Batches are background work: a loaded database may take longer than the pool's 30 s."""


def _pooled() -> Any:
    return connections.get("default").acquire_connection()


async def _select_batch(connection: Any, cutoff: datetime, cursor: tuple[datetime, str],
                        limit: int) -> list[Any]:
    return list(await connection.fetch(_SELECT_EXPIRED_EVENTS, cutoff, cursor[0], cursor[1],
                                       limit, timeout=_T))


async def _delete_batch(cutoff: datetime, cursor: tuple[datetime, str], limit: int
                        ) -> tuple[tuple[datetime, str], dict[str, int] | None]:
    async with _pooled() as connection, connection.transaction():
        rows = await _select_batch(connection, cutoff, cursor, limit)
        if not rows:
            return cursor, None
        ids = [row["id"] for row in rows]
        await connection.execute(_LOCK_DELIVERIES, ids, timeout=_T)
        counts = await connection.fetchrow(_DELETE_EVENTS, ids, timeout=_T)
    return (rows[-1]["received_at"], rows[-1]["id"]), dict(counts)


async def _count_batch(cutoff: datetime, cursor: tuple[datetime, str], limit: int,
                       counted_days: set[date]) -> tuple[tuple[datetime, str],
                                                       dict[str, int] | None]:
    """Count a batch, leaving out the events of days step 1 counted whole."""
    async with _pooled() as connection:
        rows = await _select_batch(connection, cutoff, cursor, limit)
        if not rows:
            return cursor, None
        ids = [row["id"] for row in rows
               if partitions.day_of_id(row["id"]) not in counted_days]
        related = await connection.fetchrow(_COUNT_RELATED, ids, timeout=_T)
    return (rows[-1]["received_at"], rows[-1]["id"]), {"events": len(ids), **dict(related)}


async def _purge_rejected(cutoff: datetime, batch_size: int, dry_run: bool,
                          throttle: _Throttle, counted_below: str = "") -> int:
    boundary = id_boundary("rej", cutoff)
    if dry_run:
        async with _pooled() as connection:
            return int(await connection.fetchval(_COUNT_REJECTED, boundary, cutoff,
                                                 counted_below, timeout=_T))
    removed = 0
    while True:
        async with throttle, _pooled() as connection:
            result = await connection.execute(_DELETE_REJECTED, boundary, cutoff, batch_size,
                                              timeout=_T)
        count = int(result.split()[-1])
        removed += count
        if count < batch_size:
            return removed
        await throttle.rest()


def describe(report: dict[str, Any]) -> str:
    verb = "Would remove" if report["dry_run"] else "Removed"
    return (f"{verb} {report['events']:,} events, {report['deliveries']:,} deliveries, "
            f"{report['attempts']:,} attempts and {report['rejected_requests']:,} refused "
            f"requests in {report.get('seconds', 0):.1f} s"
            f"{days_note(report)}.")


def days_note(report: dict[str, Any]) -> str:
    dropped, kept = report.get("days_dropped", 0), report.get("days_kept", 0)
    if not dropped and not kept:
        return ""
    verb = "would be dropped" if report["dry_run"] else "dropped"
    note = f"; {dropped} day partition{'s' if dropped != 1 else ''} {verb} whole"
    return note + (f", {kept} kept for now (rows in flight)" if kept else "")


DAY_SECONDS = 24 * 3600.0


PurgeStep = Callable[[], Awaitable[object]]


def start_daily_purge(interval_seconds: float = DAY_SECONDS,
                      first_run_after: float | None = None,
                      share: float = DEFAULT_SHARE,
                      also: Sequence[PurgeStep] = ()) -> asyncio.Task[None]:
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

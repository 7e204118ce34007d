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

Each app owns its purge step, with its SQL: dispatch/retention.py removes expired events
with their deliveries and attempts (it knows both tables), hooks/retention.py removes old
refused requests. This module composes them: the batches, the duty cycle, the progress,
the daily schedule.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from dispatch import retention as expired_events
from hooks import retention as rejected
from kernel.ids import id_boundary

log = logging.getLogger("relay.retention")

REJECTED_RETENTION_DAYS = rejected.RETENTION_DAYS
DEFAULT_BATCH_SIZE = 5000
DEFAULT_SHARE = 0.1
"""The part of the time the purge spends deleting; what it costs ingest is measured by
bench/purge.py (docs/benchmarks.md, "Retention purge")."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Say = Callable[[str], None]


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
                cursor, counts = await expired_events.count_batch(cutoff, cursor, batch_size)
            else:
                cursor, counts = await expired_events.delete_batch(cutoff, cursor, batch_size)
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


async def _purge_rejected(cutoff: datetime, batch_size: int, dry_run: bool,
                          throttle: _Throttle) -> int:
    boundary = id_boundary("rej", cutoff)
    if dry_run:
        return await rejected.count_expired(boundary, cutoff)
    removed = 0
    while True:
        async with throttle:
            count = await rejected.delete_expired_batch(boundary, cutoff, batch_size)
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


def start_daily_purge(interval_seconds: float = DAY_SECONDS,
                      first_run_after: float | None = None,
                      share: float = DEFAULT_SHARE) -> asyncio.Task[None]:
    """Run `purge_expired` in this process every day; returns the task (cancel it to stop).

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
            await asyncio.sleep(interval_seconds)

    return asyncio.get_running_loop().create_task(loop(), name="relay-daily-purge")

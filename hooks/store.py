"""Durable writes of the ingest path: the event and its NOTIFY in one transaction.

These are the hottest statements in Relay, so they are written as SQL on Tortoise's
connection rather than through model instances. Each event is written once: the router
learns of it from a narrow row in `event_unrouted` inserted by the same statement. Every
event is group-committed (hooks/group_commit.py): those that arrive while a write is
under way share the next write and its COMMIT. A write of events without dedup keys is
one statement (insert + notify); one that holds dedup keys is one short transaction:
advisory locks on its keys, one index lookup of their originals, one insert of the new
events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from hooks.group_commit import GroupCommit
from kernel import partitions
from kernel.database import (
    EVENT_CHANNEL,
    KEPT_PLAN_SETTINGS,
    is_database_unavailable,
    is_undefined_table,
    set_config_calls,
)
from kernel.ids import new_id

REJECTED_PER_SOURCE_PER_MINUTE = 60
REJECTED_PREVIEW_BYTES = 8 * 1024
_TRACKED_SOURCES_LIMIT = 10_000

_INSERT = (
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)"
)
_QUEUE_AND_NOTIFY = (
    "RETURNING id, event_type, source_slug, received_at), "  # noqa: S608 - constants
    "queued AS (INSERT INTO event_unrouted (event_id, event_type, source_slug, received_at)"
    " SELECT id, event_type, source_slug, received_at FROM inserted) "
    f"SELECT pg_notify('{EVENT_CHANNEL}', '') WHERE EXISTS (SELECT FROM inserted)"
)
"""Ends both inserts: each new event is also listed in `event_unrouted` (the router's
queue, see dispatch/routing.py), and the dispatchers are woken once per statement. The
wake-up carries nothing: the router reads the queue, so one per event (as before) only
made every dispatcher parse a notification per event, a thousand a second under load."""
INSERT_AND_NOTIFY = f"WITH inserted AS ({_INSERT} {_QUEUE_AND_NOTIFY}"
INSERT_MANY_AND_NOTIFY = (
    "WITH inserted AS ("  # noqa: S608 - constants; values are bound
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " SELECT id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers::jsonb, content_type, size, body"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],"
    " $12::bytea[]) AS row (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body) "
    f"{_QUEUE_AND_NOTIFY}"
)
GROUP_MAX_IN_FLIGHT = 2
GROUP_MAX_ROWS = 256
GROUP_MAX_BYTES = 4 * 1024 * 1024

_LOCK_KEYS = (
    f"SELECT pg_advisory_xact_lock(key), {set_config_calls(KEPT_PLAN_SETTINGS)}"  # noqa: S608
    " FROM unnest($1::bigint[]) AS key"
)
"""Takes the keys in the order given: callers sort them, so two batches never deadlock.

It also has the rest of the transaction (the duplicate lookup, the insert) run the way
Relay runs its hot statements over partitions (kernel.database.KEPT_PLAN_SETTINGS): left
to choose, PostgreSQL planned the lookup afresh for every batch, over two branches times
every partition read, which cost more than running it."""

_ORIGINALS_IN = """
    SELECT e.id, e.received_at, e.body, e.event_type FROM {partition} e
    WHERE q.source_id IS NOT NULL AND e.source_id = q.source_id AND e.dedup_key = q.dedup_key
    UNION ALL
    SELECT e.id, e.received_at, e.body, e.event_type FROM {partition} e
    WHERE q.source_id IS NULL AND e.source_id IS NULL AND e.dedup_key = q.dedup_key"""

_PARTITION_NAME = re.compile(r"^[a-z_]+(_p\d{8}|_default)$")


@functools.lru_cache(maxsize=8)
def find_originals_sql(partitions_read: tuple[str, ...]) -> str:
    """The duplicate lookup over `partitions_read` (those of `event` that can hold events of
    the window): the first event of each (source, dedup key) received inside its window.

    Each partition is named, and in each the only conditions an index can use are the
    equalities on both leading columns of `event_dedup_idx` (NULL sources, i.e. published
    events, in their own branch: `IS NOT DISTINCT FROM` cannot use the index). The window
    is checked on what they return, behind `OFFSET 0`. A connection keeps its plan for as
    long as it lives, so the plan must be right whatever a partition's statistics said
    when it was made: given an id or time bound on `event` to prune with, PostgreSQL may
    walk a partition that looked empty by that bound (every event of the day, on every
    lookup, once the day has filled). Here one probe of `event_dedup_idx` per partition is
    the only plan there is. The text changes with the partitions, once a day."""
    for name in partitions_read:
        if not _PARTITION_NAME.match(name):
            raise ValueError(f"not a partition name: {name!r}")
    branches = "\n    UNION ALL".join(
        _ORIGINALS_IN.format(partition=name) for name in partitions_read)
    return f"""
SELECT q.i, found.id, found.same
FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[])
     AS q (i, source_id, dedup_key, since, digest, event_type)
CROSS JOIN LATERAL (
    SELECT c.id, q.digest IS NULL OR (sha256(c.body) = q.digest
                                      AND c.event_type IS NOT DISTINCT FROM q.event_type)
               AS same
    FROM ({branches}
    OFFSET 0) AS c
    WHERE c.received_at > q.since
    ORDER BY c.received_at LIMIT 1
) AS found
"""  # noqa: S608 - partition names checked above; values are bound


_ID_CLOCK_MARGIN = timedelta(seconds=1)
"""Slack in the first day read: an id and its `received_at` come from two clock reads."""
_PARTITIONS_TTL = 60.0
"""Seconds a web process trusts its list of `event`'s partitions."""


def partitions_covering(days: Sequence[partitions.DayPartition], since: datetime
                        ) -> tuple[str, ...]:
    """Of `event`'s day partitions `days`, those that can hold events received after
    `since`, and the default partition (ids no day holds)."""
    first = (since - _ID_CLOCK_MARGIN).astimezone(UTC).date()
    return (*(part.name for part in days if part.day >= first),
            partitions.default_name("event"))


class EventPartitions:
    """The partitions of `event` a duplicate lookup reads, listed at most once a minute."""

    def __init__(self) -> None:
        self._days: list[partitions.DayPartition] = []
        self._listed_at = -math.inf

    async def covering(self, connection: Any, since: datetime) -> tuple[str, ...]:
        """The day partitions from the day of `since` on (the days ahead are empty: one
        probe of an empty index each), and the default partition."""
        if time.monotonic() - self._listed_at > _PARTITIONS_TTL:
            _, rows = await connection.execute_query(partitions.PARTITIONS_OF, ["event"])
            self._days = partitions.parse_day_partitions(
                "event", (row["relname"] for row in rows))
            self._listed_at = time.monotonic()
        return partitions_covering(self._days, since)

    def forget(self) -> None:
        """List them again next time (one was dropped since)."""
        self._listed_at = -math.inf


_event_partitions = EventPartitions()


@dataclass(frozen=True)
class NewEvent:
    source_id: str | None
    source_slug: str | None
    event_type: str | None
    dedup_key: str | None
    method: str
    query: str
    headers: dict[str, str]
    content_type: str
    body: bytes


@dataclass(frozen=True)
class StoredEvent:
    id: str
    received_at: datetime
    duplicate: bool
    same_request: bool = True
    """False when a duplicate's key is the same but its request differs (an
    `Idempotency-Key` reused for another payload)."""


@dataclass(frozen=True, slots=True)
class _Row:
    """One event waiting for the group commit, with what its dedup lookup needs."""

    id: str
    received_at: datetime
    event: NewEvent
    since: datetime
    compare_request: bool

    def values(self) -> list[Any]:
        event = self.event
        return [
            self.id, event.source_id, event.source_slug, event.event_type, event.dedup_key,
            self.received_at, event.method, event.query, json.dumps(event.headers),
            event.content_type, len(event.body), event.body,
        ]

    @property
    def dedup_identity(self) -> tuple[str, str] | None:
        key = self.event.dedup_key
        return None if key is None else (self.event.source_id or "", key)


@dataclass(frozen=True, slots=True)
class _Original:
    id: str
    same: bool


def _lock_key(identity: tuple[str, str]) -> int:
    """A 64-bit advisory-lock key for one (source, dedup key)."""
    digest = hashlib.blake2b(f"{identity[0]}\x00{identity[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, signed=True)


async def _insert_rows(client: Any, rows: list[_Row]) -> None:
    if len(rows) == 1:
        await client.execute_query(INSERT_AND_NOTIFY, rows[0].values())
    else:
        columns = [list(column) for column in zip(*(row.values() for row in rows), strict=True)]
        await client.execute_query(INSERT_MANY_AND_NOTIFY, columns)


async def _find_originals(connection: Any, rows: list[_Row]) -> dict[int, _Original]:
    keyed = [(index, row) for index, row in enumerate(rows) if row.event.dedup_key is not None]
    read = await _event_partitions.covering(connection, min(row.since for _, row in keyed))
    _, found = await connection.execute_query(find_originals_sql(read), [
        [index for index, _ in keyed],
        [row.event.source_id for _, row in keyed],
        [row.event.dedup_key for _, row in keyed],
        [row.since for _, row in keyed],
        [hashlib.sha256(row.event.body).digest() if row.compare_request else None
         for _, row in keyed],
        [row.event.event_type for _, row in keyed],
    ])
    return {record["i"]: _Original(record["id"], record["same"]) for record in found}


def _same_request(row: _Row, first: _Row) -> bool:
    return not row.compare_request or (
        row.event.body == first.event.body and row.event.event_type == first.event.event_type)


async def _write_rows(rows: list[_Row]) -> list[_Original | None]:
    """Store the rows that are new; answer, for each duplicate, the event it repeats.

    Rows without a dedup key take one statement (insert + notify, committed on its own).
    With keys, one transaction: lock the keys (sorted), look the originals up, insert the
    new rows. Several rows of one batch may share a key: the first wins.
    """
    client = connections.get("default")
    if all(row.event.dedup_key is None for row in rows):
        await _insert_rows(client, rows)
        return [None] * len(rows)
    try:
        return await _write_keyed(rows)
    except Exception as exc:
        if not is_undefined_table(exc):
            raise
        _event_partitions.forget()
        return await _write_keyed(rows)


async def _write_keyed(rows: list[_Row]) -> list[_Original | None]:
    results: list[_Original | None] = [None] * len(rows)
    async with in_transaction("default") as connection:
        identities = {row.dedup_identity for row in rows} - {None}
        keys = sorted({_lock_key(identity) for identity in identities if identity})
        await connection.execute_query(_LOCK_KEYS, [keys])
        originals = await _find_originals(connection, rows)
        winners: dict[tuple[str, str], _Row] = {}
        new_rows: list[_Row] = []
        for index, row in enumerate(rows):
            identity = row.dedup_identity
            if index in originals:
                results[index] = originals[index]
            elif identity is not None and identity in winners:
                first = winners[identity]
                results[index] = _Original(first.id, _same_request(row, first))
            else:
                if identity is not None:
                    winners[identity] = row
                new_rows.append(row)
        if new_rows:
            await _insert_rows(connection, new_rows)
    return results


_group_commit = GroupCommit(
    _write_rows, max_in_flight=GROUP_MAX_IN_FLIGHT, max_rows=GROUP_MAX_ROWS,
    max_bytes=GROUP_MAX_BYTES, is_unavailable=is_database_unavailable,
)


async def store_event(event: NewEvent, dedup_window_seconds: float, *,
                      compare_request: bool = False) -> StoredEvent:
    """Commit the event and notify the dispatcher, or find the duplicate it repeats.

    Returns only after COMMIT: the caller may then answer 2xx. Every event, with a dedup
    key or not, goes through the group commit. `compare_request` also tells whether a
    duplicate carries the same body and event type as its original.
    """
    received_at = datetime.now(UTC)
    row = _Row(new_id("evt"), received_at, event,
               received_at - timedelta(seconds=dedup_window_seconds), compare_request)
    original = await _group_commit.write(row, len(event.body))
    if original is None:
        return StoredEvent(row.id, received_at, duplicate=False)
    return StoredEvent(original.id, received_at, duplicate=True, same_request=original.same)


_INSERT_REJECTED = (
    "INSERT INTO rejected_request (id, source_id, received_at, reason, headers, body_preview, size)"
    " SELECT $1, $2::text, $3::timestamptz, $4, $5::jsonb, $6, $7"
    " WHERE (SELECT count(*) FROM rejected_request"
    "        WHERE source_id = $2::text AND received_at > $3::timestamptz - interval '1 minute') < $8"
)


class RejectionLog:
    """Keeps refused requests for debugging, at most N per source per minute.

    An in-process sliding window (the same 60 s window the database checks) turns away
    a flood before it reaches the database, exactly, even when the refusals arrive
    concurrently; the conditional insert holds the cap across processes.
    """

    def __init__(self, per_minute: int = REJECTED_PER_SOURCE_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self._counts: dict[str, deque[float]] = {}

    def _admit(self, source_id: str, now: datetime) -> bool:
        moment = now.timestamp()
        recent = self._counts.get(source_id)
        if recent is None:
            if len(self._counts) >= _TRACKED_SOURCES_LIMIT:
                self._forget_quiet_sources(moment)
            recent = self._counts[source_id] = deque()
        while recent and recent[0] <= moment - 60:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(moment)
        return True

    def _forget_quiet_sources(self, moment: float) -> None:
        self._counts = {source_id: recent for source_id, recent in self._counts.items()
                        if recent and recent[-1] > moment - 60}

    async def record(self, source_id: str, reason: str, headers: dict[str, str],
                     body: bytes) -> None:
        now = datetime.now(UTC)
        if not self._admit(source_id, now):
            return
        await connections.get("default").execute_query(
            _INSERT_REJECTED,
            [new_id("rej"), source_id, now, reason, json.dumps(headers),
             body[:REJECTED_PREVIEW_BYTES], len(body), self.per_minute],
        )


rejection_log = RejectionLog()

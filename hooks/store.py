"""Durable writes of the ingest path: the event and its NOTIFY in one transaction.

These are the hottest statements in Relay, so they are written as SQL on Tortoise's
connection rather than through model instances: one statement (insert + notify) when
the source has no dedup rule, one short transaction under an advisory lock when it has.
Events without a dedup rule are group-committed (hooks/group_commit.py): those that
arrive while a write is under way share the next statement and its COMMIT.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from hooks.group_commit import GroupCommit
from kernel.database import EVENT_CHANNEL, is_database_unavailable
from kernel.ids import new_id

REJECTED_PER_SOURCE_PER_MINUTE = 60
REJECTED_PREVIEW_BYTES = 8 * 1024
_TRACKED_SOURCES_LIMIT = 10_000

_INSERT = (
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)"
)
INSERT_AND_NOTIFY = (
    f"WITH inserted AS ({_INSERT} RETURNING id) "  # noqa: S608 - constants; values are bound
    f"SELECT pg_notify('{EVENT_CHANNEL}', id) FROM inserted"
)
INSERT_MANY_AND_NOTIFY = (
    "WITH inserted AS ("  # noqa: S608 - constants; values are bound
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " SELECT id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers::jsonb, content_type, size, body"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],"
    " $12::bytea[]) AS row (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " RETURNING id) "
    f"SELECT pg_notify('{EVENT_CHANNEL}', id) FROM inserted"
)
GROUP_MAX_IN_FLIGHT = 2
GROUP_MAX_ROWS = 256
GROUP_MAX_BYTES = 4 * 1024 * 1024
_LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_FIND_DUPLICATE = (
    "SELECT id FROM event WHERE source_id IS NOT DISTINCT FROM $1 AND dedup_key = $2"
    " AND received_at > $3 ORDER BY received_at LIMIT 1"
)


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


def _values(event_id: str, received_at: datetime, event: NewEvent) -> list[Any]:
    return [
        event_id, event.source_id, event.source_slug, event.event_type, event.dedup_key,
        received_at, event.method, event.query, json.dumps(event.headers),
        event.content_type, len(event.body), event.body,
    ]


async def _insert_rows(rows: list[list[Any]]) -> None:
    client = connections.get("default")
    if len(rows) == 1:
        await client.execute_query(INSERT_AND_NOTIFY, rows[0])
    else:
        columns = [list(column) for column in zip(*rows, strict=True)]
        await client.execute_query(INSERT_MANY_AND_NOTIFY, columns)


_group_commit = GroupCommit(
    _insert_rows, max_in_flight=GROUP_MAX_IN_FLIGHT, max_rows=GROUP_MAX_ROWS,
    max_bytes=GROUP_MAX_BYTES, is_unavailable=is_database_unavailable,
)


async def store_event(event: NewEvent, dedup_window_seconds: float) -> StoredEvent:
    """Commit the event and notify the dispatcher, or find the duplicate it repeats.

    Returns only after COMMIT: the caller may then answer 2xx.
    """
    event_id = new_id("evt")
    received_at = datetime.now(UTC)
    if event.dedup_key is None:
        await _group_commit.write(_values(event_id, received_at, event), len(event.body))
        return StoredEvent(event_id, received_at, duplicate=False)

    async with in_transaction("default") as connection:
        await connection.execute_query(_LOCK_KEY, [f"{event.source_id}:{event.dedup_key}"])
        since = received_at - timedelta(seconds=dedup_window_seconds)
        _, rows = await connection.execute_query(
            _FIND_DUPLICATE, [event.source_id, event.dedup_key, since]
        )
        if rows:
            return StoredEvent(rows[0]["id"], received_at, duplicate=True)
        await connection.execute_query(INSERT_AND_NOTIFY, _values(event_id, received_at, event))
    return StoredEvent(event_id, received_at, duplicate=False)


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

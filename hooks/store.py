"""Durable writes of the ingest path: the event and its NOTIFY in one transaction.

These are the hottest statements in Relay, so they are written as SQL on Tortoise's
connection rather than through model instances: one statement (insert + notify) when
the source has no dedup rule, one short transaction under an advisory lock when it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise import connections
from tortoise.transactions import in_transaction

from relay.database import EVENT_CHANNEL
from relay.ids import new_id

REJECTED_PER_SOURCE_PER_MINUTE = 60
REJECTED_PREVIEW_BYTES = 8 * 1024

_INSERT = (
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)"
)
INSERT_AND_NOTIFY = (
    f"WITH inserted AS ({_INSERT} RETURNING id) "  # noqa: S608 - constants; values are bound
    f"SELECT pg_notify('{EVENT_CHANNEL}', id) FROM inserted"
)
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


def _values(event_id: str, received_at: datetime, event: NewEvent) -> list:
    return [
        event_id, event.source_id, event.source_slug, event.event_type, event.dedup_key,
        received_at, event.method, event.query, json.dumps(event.headers),
        event.content_type, len(event.body), event.body,
    ]


async def store_event(event: NewEvent, dedup_window_seconds: float) -> StoredEvent:
    """Commit the event and notify the dispatcher, or find the duplicate it repeats.

    Returns only after COMMIT: the caller may then answer 2xx.
    """
    event_id = new_id("evt")
    received_at = datetime.now(UTC)
    if event.dedup_key is None:
        await connections.get("default").execute_query(
            INSERT_AND_NOTIFY, _values(event_id, received_at, event)
        )
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
    " SELECT $1, $2, $3, $4, $5::jsonb, $6, $7"
    " WHERE (SELECT count(*) FROM rejected_request"
    "        WHERE source_id = $2 AND received_at > $3::timestamptz - interval '1 minute') < $8"
)


class RejectionLog:
    """Keeps refused requests for debugging, at most N per source per minute.

    An in-process counter turns away a flood before it reaches the database; the
    conditional insert holds the cap across processes.
    """

    def __init__(self, per_minute: int = REJECTED_PER_SOURCE_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self._minute = -1
        self._counts: dict[str, int] = {}

    def _admit(self, source_id: str, now: datetime) -> bool:
        minute = int(now.timestamp() // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        count = self._counts.get(source_id, 0)
        if count >= self.per_minute:
            return False
        self._counts[source_id] = count + 1
        return True

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

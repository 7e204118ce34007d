"""dispatch's purge step: expired events go with their deliveries and attempts, once every
one of their deliveries is final. relay/retention.py runs it in batches.

Deleting an event's deliveries and the event in one statement, after locking the
deliveries, keeps an event whose delivery was just put back to `pending` (retry,
recover): the statement sees it and keeps the event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from dispatch.states import ACTIVE_SQL

Cursor = tuple[datetime, str]

_SELECT_EXPIRED_EVENTS = f"""
SELECT e.id, e.received_at FROM event e
WHERE e.received_at < $1 AND e.routed_at IS NOT NULL
  AND e.received_at >= $2::timestamptz AND (e.received_at, e.id) > ($2::timestamptz, $3::text)
  AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = e.id AND d.status IN {ACTIVE_SQL})
ORDER BY e.received_at, e.id
LIMIT $4
"""  # noqa: S608 - constants only; values are bound

_LOCK_DELIVERIES = "SELECT 1 FROM delivery WHERE event_id = ANY($1::text[]) FOR UPDATE"

# Runs after the deliveries are locked (see the module docstring).
_DELETE_EVENTS = f"""
WITH keep AS (
  SELECT DISTINCT event_id FROM delivery
  WHERE event_id = ANY($1::text[]) AND status IN {ACTIVE_SQL}
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


async def _select_batch(connection: Any, cutoff: datetime, cursor: Cursor,
                        limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]]
    _, rows = await connection.execute_query(_SELECT_EXPIRED_EVENTS,
                                             [cutoff, cursor[0], cursor[1], limit])
    return rows


async def delete_batch(cutoff: datetime, cursor: Cursor, limit: int
                       ) -> tuple[Cursor, dict[str, int] | None]:
    """Delete the next batch of expired events after `cursor`, with their deliveries and
    attempts, in one short transaction; returns the new cursor and the counts, or None
    for the counts when nothing is left."""
    async with in_transaction("default") as connection:
        rows = await _select_batch(connection, cutoff, cursor, limit)
        if not rows:
            return cursor, None
        ids = [row["id"] for row in rows]
        await connection.execute_query(_LOCK_DELIVERIES, [ids])
        _, counts = await connection.execute_query(_DELETE_EVENTS, [ids])
    return (rows[-1]["received_at"], rows[-1]["id"]), dict(counts[0])


async def count_batch(cutoff: datetime, cursor: Cursor, limit: int
                      ) -> tuple[Cursor, dict[str, int] | None]:
    """What `delete_batch` would delete, without deleting (`purge --dry-run`)."""
    connection = connections.get("default")
    rows = await _select_batch(connection, cutoff, cursor, limit)
    if not rows:
        return cursor, None
    ids = [row["id"] for row in rows]
    _, related = await connection.execute_query(_COUNT_RELATED, [ids])
    return (rows[-1]["received_at"], rows[-1]["id"]), {"events": len(rows), **dict(related[0])}

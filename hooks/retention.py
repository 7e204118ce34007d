"""hooks' purge step: refused requests older than their retention (7 days)."""

from __future__ import annotations

from datetime import datetime

from tortoise import connections

RETENTION_DAYS = 7

# Ids sort by creation time, so the primary key finds old refused requests.
_DELETE_REJECTED = """
DELETE FROM rejected_request WHERE id IN (
  SELECT id FROM rejected_request WHERE id < $1 AND received_at < $2 LIMIT $3
  FOR UPDATE SKIP LOCKED)
"""
_COUNT_REJECTED = "SELECT count(*) AS n FROM rejected_request WHERE id < $1 AND received_at < $2"


async def count_expired(boundary: str, cutoff: datetime) -> int:
    _, rows = await connections.get("default").execute_query(_COUNT_REJECTED, [boundary, cutoff])
    return int(rows[0]["n"])


async def delete_expired_batch(boundary: str, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` refused requests made before `boundary` (an id) and received
    before `cutoff`; returns how many went."""
    count, _ = await connections.get("default").execute_query(
        _DELETE_REJECTED, [boundary, cutoff, limit])
    return int(count)

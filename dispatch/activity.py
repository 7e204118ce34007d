"""What the pipeline did in a window of time, and what it holds now: the numbers behind
the live `stats` snapshot (live/stats.py shapes them for the wire).

Events received in the window, delivery attempts made in it with their success count and
duration percentiles, and the deliveries waiting or in flight now. Attempts are found
through their time-sortable ids, so the query walks the primary key, not the table.
"""

from __future__ import annotations

from typing import Any

from tortoise import connections

from dispatch.states import DELIVERING, WAITING_SQL
from kernel.ids import id_boundary

PENDING_COUNT_CAP = 100_000
"""Counting waiting deliveries stops here: a backlog this large reads as "at least"."""

STATS_QUERY = f"""
SELECT
  (SELECT count(*) FROM event WHERE received_at >= to_timestamp($1) AND received_at < to_timestamp($2))
    AS events,
  (SELECT count(*) FROM (SELECT 1 FROM delivery WHERE status IN {WAITING_SQL}
                         LIMIT {PENDING_COUNT_CAP}) AS waiting) AS pending,
  (SELECT count(*) FROM delivery WHERE status = '{DELIVERING}') AS in_flight,
  count(a.id) AS attempts,
  count(a.id) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95
FROM attempt AS a WHERE a.id >= $3 AND a.id < $4
"""  # noqa: S608 - a constant; values are bound


async def activity(start: float, end: float) -> dict[str, Any]:
    """One row: `events`, `pending`, `in_flight`, `attempts`, `succeeded`, `p50`, `p95`
    for the window [start, end) in seconds since the epoch."""
    _, rows = await connections.get("default").execute_query(
        STATS_QUERY, [start, end, id_boundary("att", start), id_boundary("att", end)]
    )
    return dict(rows[0])

"""The `stats` snapshot sent to live clients every second.

One small query per second per web process (only while it has live clients), over the
second that ended one second ago, so that rows committed a little late are counted:
events received, delivery attempts made (`deliveries_per_s`), their success rate and
duration percentiles, and the deliveries waiting (`pending`, `retrying` included) or
being sent now (`in_flight`). Attempts are found through their time-sortable ids, so the
query walks the primary key, not the table.
"""

from __future__ import annotations

import time
from typing import Any

from tortoise import connections

from dispatch.states import DELIVERING, WAITING_SQL

WINDOW_LAG_SECONDS = 1.0
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


ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
"""relay.ids' alphabet: ids start with their creation time in milliseconds, in base 32."""


def id_bound(prefix: str, moment: float) -> str:
    """The smallest id with this prefix created at `moment` (seconds since the epoch)."""
    millis, digits = int(moment * 1000), []
    for _ in range(10):
        millis, digit = divmod(millis, 32)
        digits.append(ID_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(digits))}{'0' * 16}"


def window(now: float) -> tuple[float, float]:
    end = float(int(now - WINDOW_LAG_SECONDS))
    return end - 1.0, end


def _rounded(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def shape(row: dict[str, Any], seconds: float = 1.0) -> dict[str, Any]:
    """The wire form of one stats row (docs/api.md, the live stream's `stats`)."""
    attempts = int(row.get("attempts") or 0)
    succeeded = int(row.get("succeeded") or 0)
    return {
        "events_per_s": round(int(row.get("events") or 0) / seconds, 2),
        "deliveries_per_s": round(attempts / seconds, 2),
        "success_rate": round(succeeded / attempts, 4) if attempts else None,
        "pending": int(row.get("pending") or 0),
        "in_flight": int(row.get("in_flight") or 0),
        "p50_ms": _rounded(row.get("p50")) if attempts else None,
        "p95_ms": _rounded(row.get("p95")) if attempts else None,
    }


async def current_stats(now: float | None = None) -> dict[str, Any]:
    start, end = window(time.time() if now is None else now)
    _, rows = await connections.get("default").execute_query(
        STATS_QUERY, [start, end, id_bound("att", start), id_bound("att", end)]
    )
    return shape(dict(rows[0]), end - start)

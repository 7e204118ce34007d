"""The `stats` snapshot sent to live clients every second.

One small query per second per web process (only while it has live clients), over the
second that ended one second ago, so that rows committed a little late are counted:
events received, delivery attempts made (`deliveries_per_s`), their success rate and
duration percentiles, and the deliveries waiting (`pending`, `retrying` included) or
being sent now (`in_flight`). The query is dispatch's (dispatch/activity.py): it knows
the tables; this module knows the wire form.
"""

from __future__ import annotations

import time
from typing import Any

from dispatch.activity import activity

WINDOW_LAG_SECONDS = 1.0


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
    row = await activity(start, end)
    return shape(row, end - start)

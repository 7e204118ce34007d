"""The `stats` snapshot sent to live clients every second.

Figures over the last minute, from the rollups (dispatch/stats.py: `live_stats`): events
and attempts per second, the attempts' success rate and duration percentiles (null when
the minute had no attempt), and the deliveries waiting or being sent now. A few rows
whatever the traffic, so every web process can afford it every second.
"""

from __future__ import annotations

from typing import Any

from dispatch.stats import live_stats


async def current_stats() -> dict[str, Any]:
    return await live_stats()

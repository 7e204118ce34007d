"""An endpoint's health over the last 24 hours, from its attempts and open deliveries."""

from __future__ import annotations

from typing import Any

from dispatch.endpoints import utcnow
from dispatch.queue import pooled
from dispatch.retry import CIRCUIT_COOLDOWN_SECONDS, CircuitState, circuit_status
from dispatch.states import ACTIVE_SQL, DELIVERING, WAITING_SQL

_ATTEMPTS = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)
           AS failures,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms) AS latency
FROM attempt
WHERE endpoint_id = $1 AND started_at > now() - interval '24 hours'
"""
_OPEN = f"""
SELECT count(*) FILTER (WHERE status = '{DELIVERING}') AS in_flight,
       count(*) FILTER (WHERE status IN {WAITING_SQL}) AS pending
FROM delivery
WHERE endpoint_id = $1 AND status IN {ACTIVE_SQL}
"""  # noqa: S608 - constants only; values are bound
_CIRCUIT = "SELECT circuit_opened_at, consecutive_failures FROM endpoint WHERE id = $1"


def _ms(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


async def endpoint_stats(endpoint_id: str,
                         cooldown: float = CIRCUIT_COOLDOWN_SECONDS) -> dict[str, Any]:
    async with pooled() as connection:
        attempts = await connection.fetchrow(_ATTEMPTS, endpoint_id)
        open_ = await connection.fetchrow(_OPEN, endpoint_id)
        circuit = await connection.fetchrow(_CIRCUIT, endpoint_id)
    total, failures = attempts["attempts"], attempts["failures"]
    latency = attempts["latency"] or [None, None, None]
    state = CircuitState(circuit["circuit_opened_at"], circuit["consecutive_failures"])
    return {
        "success_rate": round((total - failures) / total, 4) if total else None,
        "attempts": total,
        "failures": failures,
        "p50_ms": _ms(latency[0]),
        "p95_ms": _ms(latency[1]),
        "p99_ms": _ms(latency[2]),
        "in_flight": open_["in_flight"],
        "pending": open_["pending"],
        "circuit": circuit_status(state, utcnow(), cooldown),
    }

"""The dispatcher's metrics: counters of attempts and finished deliveries, written by
every dispatcher process, and the queue and circuit gauges read from the database when
Prometheus scrapes (registered with the metrics core by the wiring, relay/apps.py).

- `record_attempt(endpoint_id, outcome, duration_seconds)` after every HTTP try;
  `outcome` is `success`, `http_error` (a non-2xx answer) or the error kind
  (`timeout`, `connect`, `dns`, `tls`, `ssrf_blocked`, `protocol`).
- `record_delivery_final(endpoint_id, status)` when a delivery reaches a final state.
- `record_started(path, count)` as deliveries start: handed over by routing or claimed.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from tortoise import connections

from dispatch.retry import CIRCUIT_COOLDOWN_SECONDS
from dispatch.states import DELIVERING, WAITING_SQL
from kernel.metrics import Counter, Histogram

ATTEMPTS = Counter(
    "relay_delivery_attempts", "HTTP tries to deliver an event, by endpoint and outcome.",
    ["endpoint", "outcome"],
)
ATTEMPT_DURATION = Histogram(
    "relay_delivery_attempt_duration_seconds",
    "Duration of one HTTP try (all endpoints; per-endpoint percentiles are in the endpoint "
    "stats API, which keeps the series count here small).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
)
DELIVERIES = Counter(
    "relay_deliveries_completed", "Deliveries that reached a final status, by endpoint.",
    ["endpoint", "status"],
)
STARTED = Counter(
    "relay_deliveries_started",
    "Deliveries a dispatcher started sending, by how it got them: `routed` (leased as "
    "routing made them) or `claimed` (taken from the queue: retries, and what routing "
    "could not hand over).",
    ["path"],
)


_ATTEMPT_SERIES: dict[tuple[str, str], Any] = {}
_DELIVERY_SERIES: dict[tuple[str, str], Any] = {}
"""The labelled series already asked for: `labels()` validates and locks at every call,
and these are counted for every delivery. They are never removed (nor are the series
themselves)."""


def record_attempt(endpoint_id: str, outcome: str, duration_seconds: float) -> None:
    """Count one HTTP try and observe its duration (the dispatcher calls this)."""
    series = _ATTEMPT_SERIES.get((endpoint_id, outcome))
    if series is None:
        series = _ATTEMPT_SERIES[(endpoint_id, outcome)] = ATTEMPTS.labels(endpoint_id, outcome)
    series.inc()
    ATTEMPT_DURATION.observe(duration_seconds)


def record_started(path: str, count: int) -> None:
    """Count `count` deliveries started through `path` (`routed` or `claimed`)."""
    if count:
        STARTED.labels(path).inc(count)


def record_delivery_final(endpoint_id: str, status: str) -> None:
    """Count a delivery that is `succeeded`, `failed` or `cancelled` for good."""
    series = _DELIVERY_SERIES.get((endpoint_id, status))
    if series is None:
        series = _DELIVERY_SERIES[(endpoint_id, status)] = DELIVERIES.labels(endpoint_id, status)
    series.inc()



GAUGE_QUERY = f"""
SELECT
  (SELECT count(*) FROM delivery WHERE status IN {WAITING_SQL}) AS pending,
  (SELECT count(*) FROM delivery WHERE status = '{DELIVERING}') AS in_flight,
  (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)), 0)
     FROM delivery WHERE status IN {WAITING_SQL} AND next_attempt_at <= now()) AS oldest_due_age,
  (SELECT count(*) FROM endpoint WHERE deleted_at IS NULL AND enabled
     AND circuit_opened_at IS NULL) AS closed,
  (SELECT count(*) FROM endpoint WHERE deleted_at IS NULL AND enabled
     AND circuit_opened_at > now() - make_interval(secs => $1)) AS open,
  (SELECT count(*) FROM endpoint WHERE deleted_at IS NULL AND enabled
     AND circuit_opened_at <= now() - make_interval(secs => $1)) AS half_open,
  (SELECT count(*) FROM endpoint WHERE deleted_at IS NULL AND NOT enabled) AS disabled
"""  # noqa: S608 - constants only


async def scrape_gauges() -> list[Metric]:
    """The queue and circuit gauges, from one query (the metrics core bounds its time)."""
    _, rows = await connections.get("default").execute_query(
        GAUGE_QUERY, [CIRCUIT_COOLDOWN_SECONDS])
    g = {key: float(value) for key, value in dict(rows[0]).items()}
    circuits = GaugeMetricFamily("relay_endpoints",
                                 "Endpoints by state: circuit closed, open, half_open; "
                                 "or disabled.", labels=["state"])
    for state in ("closed", "open", "half_open", "disabled"):
        circuits.add_metric([state], g[state])
    return [
        GaugeMetricFamily("relay_deliveries_pending",
                          "Deliveries waiting for an attempt (pending or retrying).",
                          value=g["pending"]),
        GaugeMetricFamily("relay_deliveries_in_flight",
                          "Deliveries being attempted now (delivering).", value=g["in_flight"]),
        GaugeMetricFamily("relay_oldest_due_delivery_age_seconds",
                          "How long the oldest due delivery has waited past its time "
                          "(0 when none is due): the dispatchers' lag.",
                          value=g["oldest_due_age"]),
        circuits,
    ]

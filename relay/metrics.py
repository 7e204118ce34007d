"""Prometheus metrics, safe across processes: every uvicorn worker and every dispatcher
writes its own files in RELAY_METRICS_DIR, and `GET /metrics` adds them up.

What the hot paths pay is a counter increment and a histogram observation (no lock
shared with another process). Numbers that live in the database (the
queue, endpoint circuits) are read when Prometheus scrapes, with one short query.

For the dispatcher:

- `record_attempt(endpoint_id, outcome, duration_seconds)` after every HTTP try;
  `outcome` is `success`, `http_error` (a non-2xx answer) or the error kind
  (`timeout`, `connect`, `dns`, `tls`, `ssrf_blocked`, `protocol`).
- `record_delivery_final(endpoint_id, status)` when a delivery reaches `succeeded`,
  `failed` or `cancelled`.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("relay.metrics")

METRICS_DIR = settings.RELAY_METRICS_DIR
METRICS_DIR.mkdir(parents=True, exist_ok=True)
# prometheus_client finds its directory through this variable when it opens a process's files.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)

_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def _process_id() -> str:
    """Host and pid: containers sharing one metrics volume may reuse each other's pids."""
    return f"{_HOST}_{os.getpid()}"


values.ValueClass = values.MultiProcessValue(_process_id)

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from dispatch.states import DELIVERING, WAITING_SQL  # noqa: E402
from relay.exchange import StatusWatch  # noqa: E402

INGEST_RESULTS = ("accepted", "duplicate", "rejected", "not_found", "too_large",
                  "unavailable", "method_not_allowed", "error")
UNKNOWN_SOURCE = "_unknown"
MAX_SOURCE_LABELS = 1000

INGEST_REQUESTS = Counter(
    "relay_ingest_requests", "Requests to POST /in/<source>, by source slug and result.",
    ["source", "result"],
)
INGEST_DURATION = Histogram(
    "relay_ingest_duration_seconds", "Time from the request's arrival to the end of the answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
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


def record_attempt(endpoint_id: str, outcome: str, duration_seconds: float) -> None:
    """Count one HTTP try and observe its duration (the dispatcher calls this)."""
    ATTEMPTS.labels(endpoint_id, outcome).inc()
    ATTEMPT_DURATION.observe(duration_seconds)


def record_delivery_final(endpoint_id: str, status: str) -> None:
    """Count a delivery that is `succeeded`, `failed` or `cancelled` for good."""
    DELIVERIES.labels(endpoint_id, status).inc()


# --- Ingest: measured around the whole ASGI exchange, so the guard's 413s count too ------

_RESULT_BY_STATUS = {202: "accepted", 200: "duplicate", 401: "rejected", 404: "not_found",
                     413: "too_large", 431: "too_large", 503: "unavailable",
                     405: "method_not_allowed"}
_SOURCE_KNOWN = ("accepted", "duplicate", "rejected")
_known_sources: set[str] = set()


def ingest_result(status: int) -> str:
    return _RESULT_BY_STATUS.get(status, "error")


def source_label(slug: str, result: str) -> str:
    """The slug as a label only once this process has seen it answered as a real source.

    Anyone can post to `/in/<anything>`: unknown slugs must not create new series.
    """
    if slug in _known_sources:
        return slug
    if result in _SOURCE_KNOWN and len(_known_sources) < MAX_SOURCE_LABELS:
        _known_sources.add(slug)
        return slug
    return UNKNOWN_SOURCE


_ingest_series: dict[tuple[str, str], Any] = {}


def record_ingest(slug: str, status: int, duration_seconds: float) -> None:
    result = ingest_result(status)
    key = (source_label(slug, result), result)
    series = _ingest_series.get(key)
    if series is None:
        series = _ingest_series[key] = INGEST_REQUESTS.labels(*key)
    series.inc()
    INGEST_DURATION.observe(duration_seconds)


class IngestMetrics:
    """ASGI wrapper: counts and times every `/in/<slug>` request, whoever answers it."""

    def __init__(self, app: Callable, prefix: str = "/in/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        watch = StatusWatch(send, status=500)
        try:
            await self.app(scope, receive, watch)
        finally:
            slug = scope["path"][len(self.prefix):].strip("/")
            record_ingest(slug, watch.status, time.perf_counter() - started)


# --- Database-derived gauges, read at scrape time ------------------------------------------

SCRAPE_QUERY_TIMEOUT = 2.0
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


def circuit_cooldown_seconds() -> float:
    """The dispatcher's circuit cool-down, named in settings (relay/ imports no app code)."""
    from django.utils.module_loading import import_string

    try:
        return float(import_string(settings.RELAY_CIRCUIT_COOLDOWN))
    except (ImportError, TypeError, ValueError):
        return 30.0


async def read_database_gauges() -> dict[str, float] | None:
    """The queue and circuit numbers, or None when the database does not answer in time."""
    from tortoise import connections

    try:
        async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
            _, rows = await connections.get("default").execute_query(
                GAUGE_QUERY, [circuit_cooldown_seconds()]
            )
    except Exception as exc:  # noqa: BLE001 - a scrape reports the failure as a gauge
        log.warning("metrics: database gauges unavailable (%s)", exc.__class__.__name__)
        return None
    return {key: float(value) for key, value in dict(rows[0]).items()}


class DatabaseCollector(Collector):
    """Gauges from values read just before the scrape (collectors must be synchronous)."""

    def __init__(self, gauges: dict[str, float] | None) -> None:
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("relay_info", "Relay's version.", labels=["version"])
        info.add_metric([settings.VERSION], 1)
        yield info
        yield GaugeMetricFamily("relay_database_up",
                                "1 when the database answered the scrape's query in time.",
                                value=0 if self.gauges is None else 1)
        if self.gauges is None:
            return
        g = self.gauges
        yield GaugeMetricFamily("relay_deliveries_pending",
                                "Deliveries waiting for an attempt (pending or retrying).",
                                value=g["pending"])
        yield GaugeMetricFamily("relay_deliveries_in_flight",
                                "Deliveries being attempted now (delivering).",
                                value=g["in_flight"])
        yield GaugeMetricFamily("relay_oldest_due_delivery_age_seconds",
                                "How long the oldest due delivery has waited past its time "
                                "(0 when none is due): the dispatchers' lag.",
                                value=g["oldest_due_age"])
        circuits = GaugeMetricFamily("relay_endpoints",
                                     "Endpoints by state: circuit closed, open, half_open; "
                                     "or disabled.", labels=["state"])
        for state in ("closed", "open", "half_open", "disabled"):
            circuits.add_metric([state], g[state])
        yield circuits


MMAP_HEADER_BYTES = 8


class ProcessFilesCollector(MultiProcessCollector):
    """prometheus-client's multi-process collector, leaving out files not written yet.

    A process creates its file empty and sizes it a moment later; a scrape in between
    (any process starting, or one killed at that moment, whose empty file stays) made the
    stock collector fail on the empty file, and /metrics answer 500.
    """

    def collect(self):  # noqa: ANN201 - prometheus-client's signature
        files = [path for path in glob.glob(os.path.join(self._path, "*.db"))
                 if _size(path) >= MMAP_HEADER_BYTES]
        return self.merge(files, accumulate=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # removed meanwhile (mark_process_dead)
        return 0


def render(gauges: dict[str, float] | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    ProcessFilesCollector(registry, path=str(METRICS_DIR))
    registry.register(DatabaseCollector(gauges))
    return generate_latest(registry)


# --- GET /metrics -----------------------------------------------------------------------------


async def _authorized(request: HttpRequest) -> bool:
    from relay.crypto import hash_token
    from relay.models import ApiToken

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await ApiToken.filter(token_hash=hash_token(token.strip()), revoked_at=None).exists()


async def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"detail": "use GET"}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    if not settings.RELAY_METRICS_PUBLIC and not await _authorized(request):
        response = JsonResponse(
            {"detail": "a valid API token is required: Authorization: Bearer rly_… "
                       "(or set RELAY_METRICS_PUBLIC=true)"}, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    body = render(await read_database_gauges())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@atexit.register
def _process_exit() -> None:
    mark_process_dead(_process_id(), path=str(METRICS_DIR))

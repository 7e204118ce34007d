"""Ingest's metrics: requests to `POST /in/<source>` by source and result, and their
duration, measured around the whole ASGI exchange so the limits guard's 413s count too."""

from __future__ import annotations

import time
from typing import Any

from kernel.exchange import StatusWatch
from kernel.limits import ASGIApp, Receive, Scope, Send
from kernel.metrics import Counter, Histogram

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

    def __init__(self, app: ASGIApp, prefix: str = "/in/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        watch = StatusWatch(send, status=500)
        try:
            await self.app(scope, receive, watch)
        finally:
            slug = scope["path"][len(self.prefix):].strip("/")
            record_ingest(slug, watch.status, time.perf_counter() - started)


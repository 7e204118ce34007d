"""The metrics core, safe across processes: every uvicorn worker and every dispatcher
writes its own files in RELAY_METRICS_DIR, and `GET /metrics` adds them up.

Each app defines its own counters and histograms (hooks/metrics.py, dispatch/metrics.py)
with the `Counter` and `Histogram` imported from here, which sets up the multi-process
values first. Numbers that live in the database are read when Prometheus scrapes, by the
readers registered with `read_at_scrape` (the wiring registers dispatch's).

What the hot paths pay is a counter increment and a histogram observation (no lock
shared with another process).
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable

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


_process = [f"{_HOST}_{os.getpid()}"]


def _forked() -> None:
    _process[0] = f"{_HOST}_{os.getpid()}"


os.register_at_fork(after_in_child=_forked)


def _process_id() -> str:
    """Host and pid: containers sharing one metrics volume may reuse each other's pids.

    prometheus_client asks on every increment (to notice a fork); remembered, and renewed
    in a forked child, instead of a `getpid()` system call per increment."""
    return _process[0]


values.ValueClass = values.MultiProcessValue(_process_id)  # type: ignore[no-untyped-call]

from prometheus_client import CONTENT_TYPE_LATEST  # noqa: E402
from prometheus_client import Counter as Counter  # noqa: E402 - the apps import it from here
from prometheus_client import Histogram as Histogram  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from kernel.tokens import find_token  # noqa: E402

# --- Read at scrape time -----------------------------------------------------------------

SCRAPE_QUERY_TIMEOUT = 2.0
ScrapeReader = Callable[[], Awaitable[list[Metric]]]
_readers: list[ScrapeReader] = []


def read_at_scrape(reader: ScrapeReader) -> None:
    """Have `/metrics` call `reader` at every scrape and add the metrics it returns.

    A reader queries the database; one that fails or takes over `SCRAPE_QUERY_TIMEOUT`
    seconds is left out of that scrape and `relay_database_up` says 0.
    """
    if reader not in _readers:
        _readers.append(reader)


async def read_scraped() -> tuple[list[Metric], bool]:
    """What the registered readers return, and whether every one of them answered."""
    scraped: list[Metric] = []
    answered = True
    for reader in _readers:
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
                scraped += await reader()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure as a gauge
            log.warning("metrics: database gauges unavailable (%s)", exc.__class__.__name__)
            answered = False
    return scraped, answered


class ScrapeCollector(Collector):
    """Relay's version, whether the database answered, and what the readers returned
    (collectors must be synchronous, so the readers run before the scrape)."""

    def __init__(self, scraped: list[Metric], database_up: bool) -> None:
        self.scraped = scraped
        self.database_up = database_up

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("relay_info", "Relay's version.", labels=["version"])
        info.add_metric([settings.VERSION], 1)
        yield info
        yield GaugeMetricFamily("relay_database_up",
                                "1 when the database answered the scrape's query in time.",
                                value=1 if self.database_up else 0)
        yield from self.scraped


MMAP_HEADER_BYTES = 8


class ProcessFilesCollector(MultiProcessCollector):
    """prometheus-client's multi-process collector, leaving out files not written yet.

    A process creates its file empty and sizes it a moment later; a scrape in between
    (any process starting, or one killed at that moment, whose empty file stays) made the
    stock collector fail on the empty file, and /metrics answer 500.
    """

    def collect(self) -> Iterable[Metric]:
        files = [path for path in glob.glob(os.path.join(self._path, "*.db"))
                 if _size(path) >= MMAP_HEADER_BYTES]
        merged: Iterable[Metric] = self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # removed meanwhile (mark_process_dead)
        return 0


def render(scraped: list[Metric], database_up: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    ProcessFilesCollector(registry, path=str(METRICS_DIR))  # type: ignore[no-untyped-call]
    registry.register(ScrapeCollector(scraped, database_up))
    return generate_latest(registry)


# --- GET /metrics -----------------------------------------------------------------------------


async def _authorized(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await find_token(token.strip()) is not None


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
    body = render(*await read_scraped())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@atexit.register
def _process_exit() -> None:
    mark_process_dead(_process_id(), path=str(METRICS_DIR))  # type: ignore[no-untyped-call]

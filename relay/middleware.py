"""Natively async middleware (a sync one would cost a thread hop on every request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from relay.database import is_database_unavailable
from relay.error_codes import error_code
from relay.exchange import StatusWatch
from relay.outage import database_unavailable

log = logging.getLogger("relay.request")

MAX_LOGGED_PATH = 300


def loggable_path(path: str) -> str:
    """The path as one safe log token: control characters escaped, long paths cut."""
    if len(path) > MAX_LOGGED_PATH:
        path = path[:MAX_LOGGED_PATH] + "…"
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")
    return path


class RequestLog:
    """ASGI wrapper: one log line per HTTP request, whoever answers it (the limits guard too).

    Logged: method, path (never the query string: it may carry a token), status and
    duration. Never headers or bodies. INFO, or WARNING for a 5xx.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not settings.RELAY_REQUEST_LOG:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        except BaseException:
            watch.status = watch.status or 500
            raise
        finally:
            level = logging.WARNING if watch.status >= 500 else logging.INFO
            if log.isEnabledFor(level):
                _log_request(level, scope, watch.status, time.perf_counter() - started)


def _log_request(level: int, scope: dict[str, Any], status: int, seconds: float) -> None:
    method, path = scope.get("method", ""), loggable_path(scope.get("path", ""))
    duration_ms = round(seconds * 1000, 2)
    # makeRecord + handle: logging's usual entry point walks the stack to find the caller,
    # the largest part of a log line's cost, for a file and line that never change here.
    log.handle(log.makeRecord(
        log.name, level, __file__, 0, "%s %s %s %.1fms",
        (method, path, status or "-", duration_ms), None,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
    ))


class DatabaseUnavailableMiddleware:
    """Any view that hits an unreachable database answers 503 with Retry-After, not 500."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        return await self.get_response(request)

    async def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        return database_unavailable(
            JsonResponse({"detail": "the database is unavailable; retry later",
                          "code": error_code(503)}, status=503),
            loggable_path(request.path), exception)

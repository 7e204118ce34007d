"""Natively async middleware (a sync one would cost a thread hop on every request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from relay.database import is_database_unavailable

log = logging.getLogger("relay.request")


class DatabaseUnavailableMiddleware:
    """Any view that hits an unreachable database answers 503 with Retry-After, not 500."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        if log.isEnabledFor(logging.DEBUG) or response.status_code >= 500:
            log.log(
                logging.WARNING if response.status_code >= 500 else logging.DEBUG,
                "%s %s %s %.1fms", request.method, request.path, response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response

    async def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        response = JsonResponse({"detail": "the database is unavailable; retry later"}, status=503)
        response["Retry-After"] = "5"
        return response

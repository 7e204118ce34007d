"""`/healthz` (the process is up) and `/readyz` (the database answers)."""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, JsonResponse
from tortoise import connections

from kernel.database import is_database_unavailable
from kernel.outage import database_unavailable


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    try:
        async with asyncio.timeout(2):
            await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:
        if not is_database_unavailable(exc) and not isinstance(exc, TimeoutError):
            raise
        return database_unavailable(
            JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503),
            "/readyz", exc)
    return JsonResponse({"status": "ok", "database": "ok"})

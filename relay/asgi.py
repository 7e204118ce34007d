"""The ASGI application: lifespan (Tortoise, live bus) → request limits → Django / Channels."""

from __future__ import annotations

import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from hooks.metrics import IngestMetrics  # noqa: E402
from kernel import lifecycle  # noqa: E402
from kernel.handler import InlineASGIHandler  # noqa: E402
from kernel.limits import RequestLimits  # noqa: E402
from kernel.middleware import RequestLog  # noqa: E402

INGEST_PREFIX = "/in/"


async def body_limit(scope: dict[str, Any]) -> int:
    path: str = scope.get("path", "")
    if path.startswith(INGEST_PREFIX):
        from hooks.sources import ingest_body_limit

        return await ingest_body_limit(path[len(INGEST_PREFIX):].strip("/"))
    return int(settings.RELAY_MAX_BODY_BYTES)


class Lifespan:
    """Neither Django nor Channels handles the ASGI lifespan scope; this does."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await lifecycle.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await lifecycle.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_application() -> Any:
    http = ASGIStaticFilesHandler(InlineASGIHandler())
    router = ProtocolTypeRouter({
        "http": http,
        "websocket": _websocket_app(),
    })
    return Lifespan(RequestLog(IngestMetrics(RequestLimits(router, body_limit), INGEST_PREFIX)))


def _websocket_app() -> Any:
    try:
        from live.routing import websocket_application
    except ImportError:
        return URLRouter([])
    return websocket_application()


application = build_application()

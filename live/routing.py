"""WebSocket routes: `/ws/live`; any other path is refused at the handshake."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path

from live.consumer import LiveConsumer


async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Close before accepting: the server answers the handshake with 403."""
    await receive()
    await send({"type": "websocket.close"})


def websocket_application() -> Any:
    return URLRouter([
        path("ws/live", LiveConsumer.as_asgi()),
        re_path(r"", refuse),
    ])

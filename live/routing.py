"""WebSocket routes: `/ws/live`, `/ws/cli/<endpoint_id>`; any other path is refused at the handshake."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path

from live.consumer import LiveConsumer
from live.listen import ListenConsumer


async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Close before accepting: the server answers the handshake with 403."""
    await receive()
    await send({"type": "websocket.close"})


def websocket_application() -> Any:
    return URLRouter([
        path("ws/live", LiveConsumer.as_asgi()),
        path("ws/cli/<str:endpoint_id>", ListenConsumer.as_asgi()),
        re_path(r"", refuse),
    ])

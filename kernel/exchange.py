"""What an ASGI exchange answered, for the wrappers that log and count requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class StatusWatch:
    """An ASGI `send` that remembers the response status it passed on."""

    __slots__ = ("send", "status")

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]], status: int = 0) -> None:
        self.send = send
        self.status = status

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)

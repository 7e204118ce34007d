"""ASGI guard in front of Django: header limits (431) and body limits (413).

Django reads a whole body before any view runs, so the limits have to be enforced
here: a declared Content-Length over the limit is refused before a byte of the body
is read; a chunked body is cut off as soon as it passes the limit (after either 413,
what the client still sends is discarded for a moment: see `_answer`). The body read
here is handed on to the app (`scope["relay.body"]`) and replayed through `receive`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from relay.error_codes import error_code

MAX_HEADER_COUNT = 100
MAX_HEADER_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]
BodyLimit = Callable[[Scope], Awaitable[int]]


async def _answer(send: Callable, status: int, detail: str,
                  receive: Callable | None = None) -> None:
    """Send a complete JSON answer; with `receive`, discard what the client still sends
    (bounded) before the server closes the connection.

    Closing a socket with unread input makes the kernel send a reset, and a client that
    writes its whole body before reading (httpx, many webhook senders) then sees
    "connection reset" instead of the 413. Discarding briefly, as nginx's lingering close
    does, lets it read the answer. The body is never kept.
    """
    body = json.dumps({"detail": detail, "code": error_code(status)}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": receive is not None})
    if receive is not None:
        await _discard_rest(receive)
        await send({"type": "http.response.body", "body": b""})


async def _discard_rest(receive: Callable) -> None:
    discarded = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while discarded <= LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                discarded += len(message.get("body", b""))
    except TimeoutError:
        return


def headers_too_large(headers: list[tuple[bytes, bytes]]) -> str | None:
    if len(headers) > MAX_HEADER_COUNT:
        return f"more than {MAX_HEADER_COUNT} headers"
    if sum(len(name) + len(value) + 4 for name, value in headers) > MAX_HEADER_BYTES:
        return f"headers larger than {MAX_HEADER_BYTES // 1024} KiB"
    return None


class RequestLimits:
    def __init__(self, app: ASGIApp, body_limit: BodyLimit) -> None:
        self.app = app
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = headers_too_large(scope.get("headers", []))
        if problem is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1009})
                return
            return await _answer(send, 431, f"request header fields too large: {problem}",
                                 receive)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        limit = await self.body_limit(scope)
        declared = _content_length(scope["headers"])
        if declared is not None and declared > limit:
            return await _answer(send, 413, f"body larger than the limit of {limit} bytes",
                                 receive)

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                more = receive if message.get("more_body", False) else None
                return await _answer(send, 413, f"body larger than the limit of {limit} bytes",
                                     more)
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope["relay.body"] = body
        await self.app(scope, replay, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

"""Loopback HTTP/1.1 servers that answer byte for byte (answers no framework would write:
odd encodings, repeated headers, answers that trickle or never come)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Answer = Callable[[asyncio.StreamWriter], Awaitable[bool]]
"""Writes the answer to one request; False closes the connection."""


class ScriptedServer:
    """Reads each request on a connection, keeps its bytes, and runs `answer(writer)`;
    counts connections. Leaving it stops answers still being written."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                if not await self.answer(writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


def answering(raw: bytes) -> Answer:
    """Answer every request with `raw`, keeping the connection."""
    async def answer(writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return True
    return answer


async def silent(writer: asyncio.StreamWriter) -> bool:
    """Never answer."""
    await asyncio.Event().wait()
    return False


class RawServer(ScriptedServer):
    """Records each request's bytes and answers every request with `answer` (keep-alive)."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(answering(answer))


def http_answer(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{n}: {v}" for n, v in headers),
             f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

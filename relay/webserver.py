"""Relay's HTTP server: uvicorn with the limits a public listener needs, run as one web
worker process of `runrelay` on a listening socket its supervisor opened.

uvicorn caps concurrent connections (`limit_concurrency`: over it, new requests get 503)
and closes idle keep-alive connections (`timeout_keep_alive`), but it has no timeout for
request headers that never finish: a client that sends one header byte now and then
(slowloris) holds a connection for ever. `HeaderTimeoutProtocol` closes a connection whose
request line and headers are not complete within `RELAY_HEADER_TIMEOUT` seconds of the
connection opening or of the request's first byte.

Run alone: `python -m relay.webserver --fd N` serves on the inherited listening socket N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from relay.supervisor import exit_with_parent

HEADER_TIMEOUT_CLOSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    header_timeout: float = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(HEADER_TIMEOUT_CLOSE)
            self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol with `header_timeout` seconds (uvicorn builds it from a class)."""
    return type("RelayHttpProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})


def uvicorn_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """uvicorn's settings for Relay; `overrides` for tests (host, port, loop, lifespan)."""
    from django.conf import settings

    options: dict[str, Any] = {
        "lifespan": "on", "loop": "uvloop", "log_level": "warning",
        "http": protocol_class(settings.RELAY_HEADER_TIMEOUT),
        "ws_max_size": 1 << 20, "h11_max_incomplete_event_size": 64 * 1024,
        "limit_concurrency": settings.RELAY_MAX_CONNECTIONS,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": settings.RELAY_SHUTDOWN_GRACE,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(fd: int) -> int:
    """Serve Relay on the inherited listening socket `fd` until SIGTERM or SIGINT."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
    sock = socket.socket(fileno=fd)
    from relay.asgi import application

    server = uvicorn.Server(uvicorn_config(application))
    # uvicorn re-raises the signal that stopped it once shut down: exit normally instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        server.run(sockets=[sock])
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one Relay web worker on an inherited socket")
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    exit_with_parent()
    return serve(args.fd)


if __name__ == "__main__":
    sys.exit(main())

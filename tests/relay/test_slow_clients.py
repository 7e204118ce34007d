"""The web workers' listener against abusive clients: a request whose headers trickle in
(slowloris) is cut off after RELAY_HEADER_TIMEOUT, and beyond RELAY_MAX_CONNECTIONS open
connections new requests get 503 instead of piling up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from django.test import override_settings

from tests.relay.raw_http import read_response
from tests.servers import free_port, wait_until

HEADER_TIMEOUT = 0.5
MAX_CONNECTIONS = 3


@pytest.fixture
async def guarded_server(database) -> AsyncIterator[int]:
    """Relay under uvicorn with the production settings, a short header timeout and a
    small connection cap."""
    import uvicorn

    from relay.asgi import application
    from relay.webserver import uvicorn_config

    port = free_port()
    with override_settings(RELAY_HEADER_TIMEOUT=HEADER_TIMEOUT,
                           RELAY_MAX_CONNECTIONS=MAX_CONNECTIONS):
        config = uvicorn_config(application, host="127.0.0.1", port=port, lifespan="off",
                                loop="asyncio")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    await wait_until(lambda: server.started, message="uvicorn to start")
    yield port
    server.should_exit = True
    await task


async def _get(port: int, path: str = "/healthz") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return (await asyncio.wait_for(read_response(reader), 5)).status
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_headers_that_trickle_in_are_cut_off(guarded_server):
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded_server)
    started = loop.time()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = asyncio.ensure_future(reader.read())

    async def trickle() -> None:
        for n in range(100):
            if writer.is_closing():
                return
            with contextlib.suppress(ConnectionError):
                writer.write(f"X-Slow-{n}: a\r\n".encode())
            await asyncio.wait([closed], timeout=0.05)
            if closed.done():
                return

    await trickle()
    answer = await asyncio.wait_for(closed, 5)
    took = loop.time() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT <= took < HEADER_TIMEOUT + 2, took
    # A client that sends its request at once is served as usual.
    assert await _get(guarded_server) == 200


async def test_a_keep_alive_connection_serves_request_after_request(guarded_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded_server)
    try:
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
            assert answer.startswith(b"HTTP/1.1 200"), answer  # chunked: read to its end
            await asyncio.sleep(HEADER_TIMEOUT)  # idle between requests is not header time
    finally:
        writer.close()


async def test_connections_over_the_cap_get_503(guarded_server):
    idle = [await asyncio.open_connection("127.0.0.1", guarded_server)
            for _ in range(MAX_CONNECTIONS)]
    try:
        assert await _get(guarded_server) == 503
    finally:
        for _, writer in idle:
            writer.close()
    await wait_until(lambda: True)

    async def served() -> bool:
        return await _get(guarded_server) == 200

    await wait_until(served, timeout=5, message="a request served once the idle ones left")

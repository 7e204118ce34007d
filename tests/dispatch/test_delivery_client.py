"""The shared outgoing client (`dispatch.delivery_client`): its lean request path builds what
httpx's own path would, its transport puts exactly that request on the wire, bounds the
whole exchange by the total timeout, turns aiohttp's errors into httpx's, reuses only
connections whose answer was read; answers are read capped, and no cookie is kept between
deliveries (real servers on loopback). An upgrade of httpx or aiohttp that changes any of
this fails here."""

from __future__ import annotations

import asyncio
import gzip
import time

import aiohttp
import httpx
import pytest
from aiohttp import web

from dispatch.delivery_client import DeadlineExceeded, build_http_client
from dispatch.posting import RESPONSE_BODY_LIMIT, post_capped
from tests.dispatch.raw_answers import RawServer, ScriptedServer, answering, http_answer, silent
from tests.servers import free_port

CASES = [
    ("http://127.0.0.1:8080/hook?x=1", b'{"a": 1}',
     {"user-agent": "Relay/1", "content-type": "application/json", "Accept": "x/y",
      "webhook-id": "evt_1"}),
    ("http://[::1]:9/p", b"", {"x-a": "1"}),
    ("https://example.test/p", b"abc", {}),
    ("http://127.0.0.1/", b"z" * 5000, {"CONNECTION": "close", "x-relay-attempt": "2"}),
]


@pytest.mark.parametrize(("url", "body", "headers"), CASES)
async def test_post_request_is_what_build_request_builds(url, body, headers):
    async with build_http_client(max_connections=1, timeout=5, allowlist=["127.0.0.1"]) as client:
        expected = client.build_request("POST", httpx.URL(url), content=body, headers=headers,
                                        timeout=7.5)
        actual = client.post_request(httpx.URL(url), content=body, headers=headers, timeout=7.5)
    assert actual.headers.raw == expected.headers.raw
    assert (actual.method, actual.url, actual.content) == (
        expected.method, expected.url, expected.content)
    assert actual.extensions == {**expected.extensions, "total_timeout": 7.5}
    assert type(actual.stream) is type(expected.stream)


async def test_post_capped_joins_repeated_headers_and_caps_the_body():
    big = b"0123456789" * 2000
    server = RawServer(http_answer("201 Created", [("X-One", "1"), ("x-one", "2")], big))
    async with server as base, build_http_client(max_connections=1, timeout=5,
                                                 allowlist=["127.0.0.1"]) as client:
        answer = await post_capped(client, httpx.URL(base + "/hook?q=1"), content=b'{"a": 1}',
                                   headers={"content-type": "application/json"}, timeout=5)
    assert (answer.status_code, answer.headers["x-one"]) == (201, "1, 2")
    assert answer.body == big[:RESPONSE_BODY_LIMIT]
    assert server.requests[0].startswith(b"POST /hook?q=1 HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"a": 1}')


async def test_post_capped_decodes_an_encoded_answer():
    text = b'{"ok": true}' * 2000
    server = RawServer(http_answer("200 OK", [("Content-Encoding", "gzip")],
                                   gzip.compress(text)))
    async with server as base, build_http_client(max_connections=1, timeout=5,
                                                 allowlist=["127.0.0.1"]) as client:
        answer = await post_capped(client, httpx.URL(base + "/"), content=b"{}", headers={},
                                   timeout=5)
    assert answer.body == text[:RESPONSE_BODY_LIMIT]


async def test_a_cookie_set_by_one_endpoint_is_never_sent_again():
    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("cookie")))
        answer = web.Response(status=200)
        answer.headers["Set-Cookie"] = "session=tenant-a; Path=/"
        return answer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with build_http_client(max_connections=2, timeout=5,
                                     allowlist=["127.0.0.1"]) as client:
            for path in ("/endpoint-a", "/endpoint-b", "/endpoint-a"):
                url = httpx.URL(f"http://127.0.0.1:{port}{path}")
                headers = {"content-type": "application/json"}
                response = await client.open_post(url, content=b"{}", headers=headers,
                                                  timeout=5)
                await response.aread()
                await response.aclose()
                assert response.status_code == 200
            assert len(client.cookies) == 0
    finally:
        await runner.cleanup()
    assert seen == [("/endpoint-a", None), ("/endpoint-b", None), ("/endpoint-a", None)]


# --- the transport: what reaches the wire, deadlines, errors, connections ---------------------


async def test_the_request_goes_out_exactly_as_httpx_built_it():
    """Every header of the `httpx.Request`, in its order, as its bytes (UTF-8 text
    included), and nothing the transport adds; then the body."""
    server = ScriptedServer(answering(http_answer("204 No Content", [], b"")))
    headers = {"content-type": "application/json", "x-city": "Café Zürich",
               "x-repeat": "1", "webhook-id": "evt_1"}
    async with server as base, build_http_client(max_connections=1, timeout=5,
                                                 allowlist=["127.0.0.1"]) as client:
        url = httpx.URL(base + "/hook?q=1")
        request = client.post_request(url, content=b'{"a": 1}', headers=headers, timeout=5)
        response = await client.open_post(url, content=b'{"a": 1}', headers=headers, timeout=5)
        await response.aread()
        await response.aclose()
    expected = b"POST /hook?q=1 HTTP/1.1\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in request.headers.raw) + b"\r\n"
    assert server.requests == [expected + b'{"a": 1}']
    assert "x-city: Café Zürich".encode() in expected
    assert response.status_code == 204


async def test_the_total_timeout_ends_an_answer_that_trickles():
    """A subscriber that sends its answer a byte at a time never lets a read timeout
    fire; the request's total deadline ends it."""
    async def trickle(writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with ScriptedServer(trickle) as base, build_http_client(
            max_connections=1, timeout=5, allowlist=["127.0.0.1"]) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as raised:
            async with asyncio.timeout(10):  # the test's own bound: a missed deadline fails
                await post_capped(client, httpx.URL(base + "/"), content=b"{}", headers={},
                                  timeout=0.6)
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    assert isinstance(raised.value, httpx.TimeoutException)


async def test_the_total_timeout_ends_a_silent_subscriber():
    async with ScriptedServer(silent) as base, build_http_client(
            max_connections=1, timeout=5, allowlist=["127.0.0.1"]) as client:
        with pytest.raises(DeadlineExceeded):
            await post_capped(client, httpx.URL(base + "/"), content=b"{}", headers={},
                              timeout=0.3)


async def test_without_a_total_timeout_httpx_read_timeout_applies():
    async with ScriptedServer(silent) as base, build_http_client(
            max_connections=1, timeout=0.3, allowlist=["127.0.0.1"]) as client:
        with pytest.raises(httpx.ReadTimeout) as raised:
            await client.post(base + "/", content=b"{}")
    assert isinstance(raised.value.__cause__, aiohttp.ServerTimeoutError)


async def _hang_up(writer: asyncio.StreamWriter) -> bool:
    return False


async def _garbage(writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HELLO THERE\r\n\r\n")
    await writer.drain()
    return False


@pytest.mark.parametrize(("answer", "httpx_error", "aiohttp_error"), [
    (_hang_up, httpx.ReadError, aiohttp.ServerDisconnectedError),
    (_garbage, httpx.RemoteProtocolError, aiohttp.ClientResponseError),
])
async def test_aiohttp_errors_arrive_as_httpx_errors_caused_by_them(answer, httpx_error,
                                                                     aiohttp_error):
    async with ScriptedServer(answer) as base, build_http_client(
            max_connections=1, timeout=5, allowlist=["127.0.0.1"]) as client:
        with pytest.raises(httpx_error) as raised:
            await client.post(base + "/", content=b"{}")
    assert isinstance(raised.value.__cause__, aiohttp_error)
    assert raised.value.request.url == httpx.URL(base + "/")


async def test_a_refused_connection_is_a_connect_error():
    async with build_http_client(max_connections=1, timeout=5,
                                 allowlist=["127.0.0.1"]) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)


async def test_a_header_that_is_not_utf8_is_refused_before_sending():
    server = ScriptedServer(answering(http_answer("204 No Content", [], b"")))
    async with server as base, build_http_client(max_connections=1, timeout=5,
                                                 allowlist=["127.0.0.1"]) as client:
        request = httpx.Request("POST", base + "/", headers=[(b"x-bad", b"\xff")],
                                content=b"{}")
        with pytest.raises(httpx.LocalProtocolError, match="not UTF-8"):
            await client.send(request)
    assert server.requests == []


async def test_a_read_answer_keeps_its_connection_an_unread_one_closes_it():
    """Answers without a body (204, `Content-Length: 0`) are not read at all, and their
    connection is kept as much as one whose body was read."""
    big = b"z" * (4 << 20)  # far more than arrives before the capped read stops
    small = ScriptedServer(answering(http_answer("200 OK", [], b"ok")))
    empty = ScriptedServer(answering(http_answer("204 No Content", [], b"")))
    zero = ScriptedServer(answering(http_answer("200 OK", [], b"")))
    large = ScriptedServer(answering(http_answer("200 OK", [], big)))
    async with small as small_base, empty as empty_base, zero as zero_base, \
            large as large_base, build_http_client(max_connections=4, timeout=5,
                                                   allowlist=["127.0.0.1"]) as client:
        for _ in range(3):
            for base, body in ((small_base, b"ok"), (empty_base, b""), (zero_base, b""),
                               (large_base, big[:RESPONSE_BODY_LIMIT])):
                answer = await post_capped(client, httpx.URL(base + "/"), content=b"{}",
                                           headers={}, timeout=5)
                assert answer.body == body
    assert (len(small.requests), small.connections) == (3, 1)
    assert (len(empty.requests), empty.connections) == (3, 1)
    assert (len(zero.requests), zero.connections) == (3, 1)
    assert (len(large.requests), large.connections) == (3, 3)


async def test_a_streamed_request_body_is_read_then_sent():
    async def parts():
        yield b'{"a": '
        yield b"1}"

    server = ScriptedServer(answering(http_answer("204 No Content", [], b"")))
    async with server as base, build_http_client(max_connections=1, timeout=5,
                                                 allowlist=["127.0.0.1"]) as client:
        response = await client.post(base + "/", content=parts(),
                                     headers={"content-length": "8"})
    assert response.status_code == 204
    assert server.requests[0].endswith(b'\r\n\r\n{"a": 1}')


def test_a_long_total_timeout_is_not_rounded_up():
    """aiohttp rounds a deadline of more than 5 s up to the loop's next whole second
    unless told not to: an attempt's 10 s must not become 10.9 s."""
    from dispatch.delivery_client import _client_timeout

    timeout = _client_timeout(10.0, 10.0, 10.0, 10.0)
    assert (timeout.total, timeout.sock_read, timeout.sock_connect, timeout.connect) == (
        10.0, None, None, None)
    assert timeout.ceil_threshold > 10.0

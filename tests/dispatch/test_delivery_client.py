"""The shared outgoing client's lean request path sends what httpx's own path would, its
answers are read capped, and it keeps no cookies between deliveries (real servers on
loopback)."""

from __future__ import annotations

import gzip

import httpx
import pytest
from aiohttp import web

from dispatch.posting import RESPONSE_BODY_LIMIT, post_capped
from dispatch.ssrf import build_http_client
from tests.dispatch.raw_answers import RawServer, http_answer

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
    assert (actual.method, actual.url, actual.content, actual.extensions) == (
        expected.method, expected.url, expected.content, expected.extensions)
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

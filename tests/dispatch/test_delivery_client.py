"""The shared outgoing client's lean request path sends what httpx's own path would, and
the client keeps no cookies between deliveries (real server on loopback)."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from dispatch.ssrf import build_http_client

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
                response = await client.open_post(
                    httpx.URL(f"http://127.0.0.1:{port}{path}"), content=b"{}",
                    headers={"content-type": "application/json"}, timeout=5)
                await response.aread()
                await response.aclose()
                assert response.status_code == 200
            assert len(client.cookies) == 0
    finally:
        await runner.cleanup()
    assert seen == [("/endpoint-a", None), ("/endpoint-b", None), ("/endpoint-a", None)]

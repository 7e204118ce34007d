"""InlineASGIHandler against Django's own ASGIHandler: the same request gives the same
status, headers and body through both, and the same request signals fire."""

from __future__ import annotations

import asyncio

import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from kernel.handler import InlineASGIHandler


def _scope(method: str, path: str, query: bytes = b"", headers=(), body_in_scope=None) -> dict:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    if body_in_scope is not None:
        scope["relay.body"] = body_in_scope
    return scope


async def _call(app, scope: dict, chunks: list[bytes]) -> dict:
    """Run one request through `app`; the client stays connected after its body."""
    messages = [{"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
                for n, chunk in enumerate(chunks)]
    sent: list[dict] = []
    never = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop(0)
        await never.wait()

    async def send(message):
        sent.append(message)

    started, finished = [], []

    def on_started(**kwargs):
        started.append(kwargs.get("sender"))

    def on_finished(**kwargs):
        finished.append(kwargs.get("sender"))

    signals.request_started.connect(on_started)
    signals.request_finished.connect(on_finished)
    try:
        async with asyncio.timeout(10):
            await app(scope, receive, send)
    finally:
        signals.request_started.disconnect(on_started)
        signals.request_finished.disconnect(on_finished)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert not bodies[-1].get("more_body", False)
    return {
        "status": start["status"],
        "headers": sorted((k.lower(), v) for k, v in start["headers"] if k.lower() != b"date"),
        "body": b"".join(m.get("body", b"") for m in bodies),
        "signals": (len(started), len(finished)),
    }


CASES = [
    pytest.param("GET", "/plain", b"", [], [b""], id="get"),
    pytest.param("POST", "/echo", b"a=1&b=two", [(b"content-type", b"application/json"),
                                                  (b"x-thing", b"t")],
                 [b'{"hello": ', b'"world"}'], id="post-with-body-in-two-chunks"),
    pytest.param("POST", "/echo", b"", [(b"content-type", b"application/octet-stream")],
                 [bytes(range(256)) * 64], id="post-binary"),
    pytest.param("GET", "/nowhere", b"", [], [b""], id="404"),
    pytest.param("POST", "/only-get", b"", [], [b"x"], id="405"),
    pytest.param("GET", "/boom", b"", [], [b""], id="500"),
    pytest.param("GET", "/cookies", b"", [(b"cookie", b"a=1; b=2")], [b""], id="cookies"),
    pytest.param("GET", "/stream", b"", [], [b""], id="streaming"),
    pytest.param("DELETE", "/sync", b"", [], [b""], id="sync-view"),
    pytest.param("GET", "/redirect", b"", [], [b""], id="redirect"),
    pytest.param("GET", "/empty", b"", [], [b""], id="204"),
    pytest.param("HEAD", "/plain", b"", [], [b""], id="head"),
]


@pytest.mark.parametrize(("method", "path", "query", "headers", "chunks"), CASES)
@override_settings(ROOT_URLCONF="tests.relay.handler_urls")
async def test_same_answer_as_djangos_handler(method, path, query, headers, chunks):
    expected = await _call(ASGIHandler(), _scope(method, path, query, headers), chunks)
    inline = await _call(InlineASGIHandler(), _scope(method, path, query, headers), chunks)
    assert inline == expected
    assert expected["signals"] == (1, 1)


@override_settings(ROOT_URLCONF="tests.relay.handler_urls")
async def test_body_read_by_the_limits_guard_is_used():
    body = b'{"from": "guard"}'
    headers = [(b"content-type", b"application/json")]
    expected = await _call(ASGIHandler(), _scope("POST", "/echo", headers=headers), [body])
    inline = await _call(InlineASGIHandler(),
                         _scope("POST", "/echo", headers=headers, body_in_scope=body), [])
    assert inline == expected
    assert b'"length": 17' in inline["body"]


@override_settings(ROOT_URLCONF="tests.relay.handler_urls")
async def test_500_is_djangos_error_page():
    answer = await _call(InlineASGIHandler(), _scope("GET", "/boom"), [b""])
    assert answer["status"] == 500
    assert b"Server Error (500)" in answer["body"]


@pytest.mark.parametrize("handler", [ASGIHandler, InlineASGIHandler])
@override_settings(ROOT_URLCONF="tests.relay.handler_urls")
async def test_client_gone_before_the_body_ends_gets_no_answer(handler):
    messages = [{"type": "http.request", "body": b"part", "more_body": True},
                {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    await handler()(_scope("POST", "/echo"), receive, send)
    assert sent == []


async def test_refuses_other_scope_types():
    with pytest.raises(ValueError, match="websocket"):
        await InlineASGIHandler()({"type": "websocket"}, None, None)

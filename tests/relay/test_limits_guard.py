"""The limits guard as a plain ASGI app (no server): after a 413 it discards what the
client still sends, but only up to a bound in bytes and in time, then ends the response."""

from __future__ import annotations

import asyncio

from kernel import limits


async def _never_called(scope, receive, send):
    raise AssertionError("the app must not run for a refused request")


async def _limit(scope) -> int:
    return 100


async def _run(scope_headers, receive) -> tuple[list[dict], int]:
    sent: list[dict] = []
    reads = 0

    async def counting_receive():
        nonlocal reads
        reads += 1
        return await receive()

    async def send(message):
        sent.append(message)

    guard = limits.RequestLimits(_never_called, _limit)
    scope = {"type": "http", "method": "POST", "path": "/in/x", "headers": scope_headers}
    async with asyncio.timeout(5):
        await guard(scope, counting_receive, send)
    return sent, reads


def _assert_complete_413(sent: list[dict]) -> None:
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b"limit of 100 bytes" in b"".join(m.get("body", b"") for m in sent[1:])
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)


async def test_endless_body_is_discarded_only_up_to_the_byte_bound(monkeypatch):
    monkeypatch.setattr(limits, "LINGER_BYTES", 10_000)

    async def endless():
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent, reads = await _run([(b"content-length", b"999999")], endless)
    _assert_complete_413(sent)
    assert reads == 11


async def test_silent_client_is_given_up_after_the_time_bound(monkeypatch):
    monkeypatch.setattr(limits, "LINGER_SECONDS", 0.05)

    async def silent():
        await asyncio.Event().wait()

    sent, _ = await _run([(b"content-length", b"999999")], silent)
    _assert_complete_413(sent)


async def test_discarding_stops_at_the_end_of_the_body():
    messages = [{"type": "http.request", "body": b"a" * 60, "more_body": True}] * 2 + [
        {"type": "http.request", "body": b"a" * 60, "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]

    async def receive():
        return messages.pop(0)

    sent, reads = await _run([], receive)
    _assert_complete_413(sent)
    assert reads == 4 and messages == []


async def test_body_over_the_limit_in_its_last_chunk_needs_no_discarding():
    async def receive():
        return {"type": "http.request", "body": b"a" * 101, "more_body": False}

    sent, reads = await _run([], receive)
    _assert_complete_413(sent)
    assert reads == 1

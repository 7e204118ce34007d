"""Bodies over a source's limit: 413, nothing stored, the rest of the body not read."""

from __future__ import annotations

import pytest

from tests.relay.raw_http import exchange, request_head

LIMIT = 1000


@pytest.fixture
async def limited(make_source):
    return await make_source("small", max_body_bytes=LIMIT)


async def test_body_at_the_limit_is_accepted(client, limited, event_count):
    answer = await client.post("/in/small", content=b"a" * LIMIT)
    assert answer.status_code == 202, answer.text
    assert await event_count(size=LIMIT) == 1


async def test_body_one_byte_over_is_413(client, limited, event_count):
    answer = await client.post("/in/small", content=b"a" * (LIMIT + 1))
    assert answer.status_code == 413
    assert str(LIMIT) in answer.json()["detail"]
    assert await event_count() == 0


async def test_declared_length_over_the_limit_is_refused_before_the_body(
        relay_server, limited, event_count):
    """Only the head is sent: the 413 comes without a byte of the body."""
    head = request_head("POST", "/in/small", [("Content-Length", "50000000"),
                                              ("Content-Type", "application/json")])
    answer = await exchange(relay_server, head)
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert await event_count() == 0


async def test_chunked_body_is_cut_off_at_the_limit(client, limited, event_count):
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(200):
            sent += 100
            yield b"b" * 100

    answer = await client.post("/in/small", content=chunks())
    assert answer.status_code == 413
    assert await event_count() == 0


async def test_unfinished_chunked_body_gets_413_once_past_the_limit(
        relay_server, limited, event_count):
    """The chunked body never ends: the answer must come as soon as the limit is passed."""
    head = request_head("POST", "/in/small", [("Transfer-Encoding", "chunked")])
    chunk = b"a" * 600
    partial = head + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
    answer = await exchange(relay_server, partial)
    assert answer.status == 413
    assert await event_count() == 0


async def test_chunked_body_under_the_limit_is_accepted(client, limited, event_count):
    async def chunks():
        for _ in range(10):
            yield b"c" * 100

    answer = await client.post("/in/small", content=chunks())
    assert answer.status_code == 202, answer.text
    assert await event_count(size=LIMIT) == 1


async def test_unset_limit_is_the_global_default(client, admin, make_source, relay_server,
                                                 event_count):
    from django.conf import settings

    source = await make_source("default")
    assert source["max_body_bytes"] == settings.RELAY_MAX_BODY_BYTES == 1024 * 1024
    head = request_head("POST", "/in/default",
                        [("Content-Length", str(settings.RELAY_MAX_BODY_BYTES + 1))])
    assert (await exchange(relay_server, head)).status == 413
    answer = await client.post("/in/default", content=b"d" * settings.RELAY_MAX_BODY_BYTES)
    assert answer.status_code == 202
    assert await event_count() == 1


async def test_expect_100_continue_over_the_limit_gets_413_not_continue(relay_server, limited,
                                                                        event_count):
    head = request_head("POST", "/in/small", [("Content-Length", "5000"),
                                              ("Expect", "100-continue")])
    answer = await exchange(relay_server, head)
    assert answer.status == 413
    assert await event_count() == 0

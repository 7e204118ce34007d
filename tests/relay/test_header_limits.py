"""More than 100 headers, or more than 64 KiB of them, is 431 on every route; the server
itself accepts headers up to that size."""

from __future__ import annotations

import json

import pytest

from hooks.models import Event
from tests.relay.raw_http import exchange, request_head

ROUTES = [("POST", "/in/open"), ("GET", "/healthz"), ("GET", "/api/v1/sources")]


@pytest.fixture
async def open_source(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin, json={"slug": "open"})
    assert answer.status_code == 201


def _request(method: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    return request_head(method, path, [*headers, ("Content-Length", "2")]) + b"{}"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_more_than_100_headers_is_431(relay_server, open_source, method,
                                            path):
    headers = [(f"X-H{n}", "v") for n in range(99)]  # + Host + Content-Length = 101
    answer = await exchange(relay_server, _request(method, path, headers))
    assert answer.status == 431
    assert "100 headers" in json.loads(answer.body)["detail"]
    assert await Event.all().count() == 0


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_more_than_64_kib_of_headers_is_431(relay_server, open_source,
                                                  method, path):
    headers = [("X-Big", "a" * (64 * 1024))]
    answer = await exchange(relay_server, _request(method, path, headers))
    assert answer.status == 431
    assert "64 KiB" in json.loads(answer.body)["detail"]
    assert await Event.all().count() == 0


async def test_100_headers_of_nearly_64_kib_are_accepted(relay_server, open_source):
    """98 headers of 600 bytes (about 60 KiB) + Host + Content-Length: 100 in all."""
    headers = [(f"X-H{n:02d}", "b" * 600) for n in range(98)]
    answer = await exchange(relay_server, _request("POST", "/in/open", headers))
    assert answer.status == 202, answer.body
    assert await Event.all().count() == 1


async def test_one_header_of_60_kib_is_accepted(relay_server, open_source):
    answer = await exchange(relay_server, _request("POST", "/in/open", [("X-Big", "c" * 61440)]))
    assert answer.status == 202, answer.body
    assert await Event.all().count() == 1

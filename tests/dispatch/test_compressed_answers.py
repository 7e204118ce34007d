"""A subscriber's compressed answer cannot blow up the dispatcher's memory: Relay asks for
no compression, decodes one gzip/deflate layer at most and never past the 8 KiB it keeps,
and records an answer with more layers as a `protocol` failure (real loopback servers)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import httpx
import pytest

from dispatch.delivery_client import build_http_client
from dispatch.posting import RESPONSE_BODY_LIMIT, post_capped
from tests.dispatch.conftest import make_endpoint, make_source, post_event
from tests.dispatch.raw_answers import RawServer, http_answer
from tests.servers import wait_until

EXPANDED = 64 * 1024 * 1024
"""What the bombs below decode to: far beyond anything the dispatcher should hold."""
MEMORY_BOUND = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def one_layer_bomb() -> bytes:
    return gzip.compress(bytes(EXPANDED), compresslevel=9)


@pytest.fixture(scope="module")
def two_layer_bomb(one_layer_bomb: bytes) -> bytes:
    return gzip.compress(one_layer_bomb, compresslevel=9)


async def _peak_while_posting(answer: bytes) -> tuple[int, object]:
    """(peak traced memory, the answer or the exception) of one capped POST."""
    server = RawServer(answer)
    async with server as base, build_http_client(max_connections=1, timeout=10,
                                                 allowlist=["127.0.0.1"]) as client:
        tracemalloc.start()
        try:
            outcome: object = await post_capped(client, httpx.URL(base + "/"), content=b"{}",
                                                headers={}, timeout=10)
        except httpx.HTTPError as exc:
            outcome = exc
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return peak, outcome


async def test_one_gzip_layer_is_decoded_only_as_far_as_it_is_kept(one_layer_bomb):
    answer = http_answer("200 OK", [("Content-Encoding", "gzip")], one_layer_bomb)
    peak, outcome = await _peak_while_posting(answer)
    assert peak < MEMORY_BOUND, f"{peak:,} bytes traced"
    assert outcome.body == bytes(RESPONSE_BODY_LIMIT)


async def test_two_gzip_layers_are_refused_without_being_decoded(two_layer_bomb):
    assert len(two_layer_bomb) < 8 * 1024
    answer = http_answer("200 OK", [("Content-Encoding", "gzip, gzip")], two_layer_bomb)
    peak, outcome = await _peak_while_posting(answer)
    assert peak < MEMORY_BOUND, f"{peak:,} bytes traced"
    assert isinstance(outcome, httpx.DecodingError)
    assert "2 content-encoding layers" in str(outcome)


async def test_two_layers_in_two_header_lines_are_refused_too(two_layer_bomb):
    answer = http_answer("200 OK", [("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
                         two_layer_bomb)
    _, outcome = await _peak_while_posting(answer)
    assert isinstance(outcome, httpx.DecodingError)


@pytest.mark.parametrize("wrap", [zlib.compress, lambda data: zlib.compress(data)[2:-4]],
                         ids=["zlib", "raw"])
async def test_deflate_in_both_shapes_is_decoded(wrap):
    text = b'{"ok": true}' * 2000
    answer = http_answer("200 OK", [("Content-Encoding", "deflate")], wrap(text))
    _, outcome = await _peak_while_posting(answer)
    assert outcome.body == text[:RESPONSE_BODY_LIMIT]


async def test_relay_asks_for_uncompressed_answers(client, admin, dispatcher):
    server = RawServer(http_answer("204 No Content", [], b""))
    async with server as base:
        await make_source(client, admin, "shop")
        await make_endpoint(client, admin, base + "/hook")
        await post_event(client, "shop", headers={"accept-encoding": "gzip, br"})
        await wait_until(lambda: len(server.requests) == 1, message="the delivery")
    head = server.requests[0].split(b"\r\n\r\n")[0].lower()
    assert b"\r\naccept-encoding: identity" in head
    assert head.count(b"accept-encoding") == 1


async def test_a_bomb_answer_is_a_recorded_protocol_failure(client, admin, dispatcher,
                                                             two_layer_bomb):
    from dispatch.models import Attempt

    server = RawServer(http_answer("200 OK", [("Content-Encoding", "gzip, gzip")],
                                   two_layer_bomb))
    async with server as base:
        await make_source(client, admin, "shop")
        endpoint = await make_endpoint(client, admin, base + "/hook")
        await post_event(client, "shop")

        async def recorded() -> bool:
            return await Attempt.filter(endpoint_id=endpoint["id"]).exists()

        await wait_until(recorded, message="the attempt to be recorded")
    [attempt] = await Attempt.filter(endpoint_id=endpoint["id"])
    assert (attempt.status_code, attempt.error) == (None, "protocol")
    assert "content-encoding" in attempt.error_detail

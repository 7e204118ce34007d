"""Fuzzing the hardening limits: hostile JSON at ingest and in filters, and compressed or
malformed answers from a loopback receiver. Nothing raises, nothing answers 5xx, memory
stays bounded."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.delivery_client import build_http_client
from dispatch.posting import RESPONSE_BODY_LIMIT, post_capped
from kernel.filters import FilterBudget, matches_filter, parse_document
from tests.dispatch.raw_answers import RawServer, http_answer
from tests.ops.fuzz import bodies, budget, hostile_json, json_like

MEMORY_BOUND = 8 * 1024 * 1024


@pytest.fixture
async def rule_source(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "hostile", "event_type": {"json_path": "type"}, "dedup": {"json_path": "id"}})
    assert answer.status_code == 201, answer.text


@given(body=st.one_of(hostile_json, bodies))
@budget(30)
async def test_hostile_json_at_ingest_is_stored_not_crashed_on(client, rule_source, body):
    answer = await client.post("/in/hostile", content=body,
                               headers={"content-type": "application/json"})
    assert answer.status_code in (200, 202), answer.text[:300]


filters = st.one_of(
    st.dictionaries(st.sampled_from(["a", "type", "0", "a.a", "n"]), json_like, max_size=3),
    st.lists(json_like, max_size=200).map(lambda values: {"a": {"$in": values}}),
    st.sampled_from([{"a": {"$contains": 0}}, {"$not": {"a": [0]}}, {"n": {"$gt": 1e308}},
                     {"$or": [{"a": {"$nin": [0, 1]}}, {"0": {"$exists": True}}]}]),
)


@given(body=st.one_of(hostile_json, bodies), rule=filters)
@budget(60)
def test_filters_never_raise_and_stay_within_budget(body, rule):
    spend = FilterBudget()
    result = matches_filter(rule, parse_document(body), spend)
    assert isinstance(result, bool)
    assert spend.spent <= spend.limit + 400_002  # at most one over-budget array past it


def _encode(layers: list[str], payload: bytes) -> bytes:
    for layer in layers:
        if layer in ("gzip", "x-gzip"):
            payload = gzip.compress(payload)
        elif layer == "deflate":
            payload = zlib.compress(payload)
    return payload


answers = st.tuples(
    st.lists(st.sampled_from(["gzip", "deflate", "identity", "br", "x-gzip", "junk"]),
             max_size=3),
    st.one_of(st.binary(max_size=2000), st.integers(0, 32).map(lambda mib: bytes(mib << 20))),
    st.booleans(),
)


@given(answer=answers)
@budget(25)
async def test_any_compressed_answer_is_read_capped(answer):
    layers, payload, honest = answer
    body = _encode(layers, payload) if honest else payload
    header = [("Content-Encoding", ", ".join(layers))] if layers else []
    server = RawServer(http_answer("200 OK", header, body))
    async with server as base, build_http_client(max_connections=1, timeout=10,
                                                 allowlist=["127.0.0.1"]) as client:
        tracemalloc.start()
        try:
            read = await post_capped(client, httpx.URL(base + "/"), content=b"{}", headers={},
                                     timeout=10)
            assert len(read.body) <= RESPONSE_BODY_LIMIT
        except httpx.HTTPError:
            pass
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    # The loopback server in this process buffers its answer too: only expansion counts.
    assert peak < MEMORY_BOUND + 2 * len(body), f"{peak:,} bytes traced"

"""Random requests to `POST /in/<slug>` for every verification scheme: random headers,
bodies, content types, query strings and chunking, signed correctly or not. Relay never
answers 5xx, accepts exactly the correctly signed ones, and stays up."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hooks import signing
from tests.ops.fuzz import bodies, budget, content_types, header_names, header_values

TOKEN = "fuzz-token-0123456789"
HMAC_SECRET = "fuzz-hmac-secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"fuzz-standard-webhooks-key").decode()

Signer = Callable[[bytes], tuple[dict[str, str], dict[str, str]]]  # -> (headers, query)

SCHEMES: dict[str, tuple[dict, Signer | None, set[str]]] = {
    "none": ({"kind": "none"}, None, set()),
    "token-header": ({"kind": "token", "secret": TOKEN},
                     lambda body: ({"x-relay-token": TOKEN}, {}), {"x-relay-token"}),
    "token-query": ({"kind": "token", "query_param": "t", "secret": TOKEN},
                    lambda body: ({}, {"t": TOKEN}), set()),
    "hmac-sha1-hex": ({"kind": "hmac", "header": "x-sig", "algorithm": "sha1",
                       "encoding": "hex", "secret": HMAC_SECRET},
                      lambda body: ({"x-sig": signing.plain_hmac(HMAC_SECRET, body, "sha1")}, {}),
                      {"x-sig"}),
    "hmac-sha512-base64-prefix": (
        {"kind": "hmac", "header": "x-sig", "algorithm": "sha512", "encoding": "base64",
         "prefix": "sha512=", "secret": HMAC_SECRET},
        lambda body: ({"x-sig": signing.plain_hmac(HMAC_SECRET, body, "sha512", "base64",
                                                   "sha512=")}, {}),
        {"x-sig"}),
    "github": ({"kind": "github", "secret": HMAC_SECRET},
               lambda body: (signing.github(HMAC_SECRET, body), {}), {"x-hub-signature-256"}),
    "stripe": ({"kind": "stripe", "secret": HMAC_SECRET},
               lambda body: (signing.stripe(HMAC_SECRET, body), {}), {"stripe-signature"}),
    "standard_webhooks": (
        {"kind": "standard_webhooks", "secret": STANDARD_SECRET},
        lambda body: (signing.standard_webhooks_raw(STANDARD_SECRET, body,
                                                    message_id=f"msg_{time.time_ns()}"), {}),
        {"webhook-id", "webhook-timestamp", "webhook-signature"}),
    "shopify": ({"kind": "shopify", "secret": HMAC_SECRET},
                lambda body: (signing.shopify(HMAC_SECRET, body), {}),
                {"x-shopify-hmac-sha256"}),
}
# Framing headers belong to the HTTP client and server, not to what Relay is asked to do.
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade",
           "te", "trailer", "keep-alive", "content-type",
           "x-relay-hops"}  # past 5 it is a 508 by design


async def _chunks(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(body):
            yield body[start:cut]
            start = cut
    yield body[start:]


@pytest.fixture
async def fuzz_sources(client, admin):
    for name, (verification, _, _) in SCHEMES.items():
        answer = await client.post("/api/v1/sources", headers=admin, json={
            "slug": f"fuzz-{name.replace('_', '-')}", "verification": verification})
        assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("scheme", list(SCHEMES))
@given(data=st.data())
@budget(25)
async def test_ingest_answers_every_request_without_5xx(scheme, client, fuzz_sources, data):
    _, signer, reserved = SCHEMES[scheme]
    body = data.draw(bodies, label="body")
    mode = data.draw(st.sampled_from(["signed", "garbage", "missing"]), label="signature")
    headers = data.draw(st.dictionaries(
        header_names.filter(lambda name: name.lower() not in FRAMING | reserved),
        header_values, max_size=12), label="headers")
    headers["content-type"] = data.draw(content_types, label="content type")
    query = data.draw(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
                      label="query")
    if signer is not None and mode == "signed":
        signed_headers, signed_query = signer(body)
        headers.update(signed_headers)
        query.update(signed_query)
    elif signer is not None and mode == "garbage":
        for name in reserved or {"x-relay-token"}:
            headers[name] = data.draw(header_values, label=f"garbage {name}")
        query["t"] = data.draw(st.text(max_size=30), label="garbage token")
    chunked = data.draw(st.booleans(), label="chunked")
    cuts = data.draw(st.lists(st.integers(0, max(len(body), 1)), max_size=6), label="cuts")
    content = _chunks(body, cuts) if chunked else body

    try:
        answer = await client.post(
            f"/in/fuzz-{scheme.replace('_', '-')}", params=query, content=content,
            headers={name: value.encode("latin-1") for name, value in headers.items()})
    except httpx.HTTPError as exc:  # the connection broke: Relay crashed or hung up
        raise AssertionError(f"no answer: {exc!r}") from exc
    assert answer.status_code < 500, answer.text
    if signer is None or mode == "signed":
        assert answer.status_code in (200, 202), answer.text
        assert answer.json()["id"].startswith("evt_")
    else:
        assert answer.status_code == 401, answer.text


@given(data=st.data())
@budget(20)
async def test_other_methods_and_unknown_sources_are_answered(client, fuzz_sources, data):
    method = data.draw(st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]))
    slug = data.draw(st.sampled_from(["fuzz-none", "fuzz-github", "%00", "a" * 101]) | st.text(
        "abcdefghijklmnopqrstuvwxyz0123456789-_.~%", min_size=1, max_size=120))
    method = data.draw(st.sampled_from([method, "POST"]), label="or POST")
    answer = await client.request(method, f"/in/{slug}", content=data.draw(bodies))
    assert answer.status_code < 500, answer.text
    assert answer.status_code in (202, 400, 401, 404, 405), answer.text

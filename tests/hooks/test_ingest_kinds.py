"""Each verification kind end to end: a correctly signed webhook is stored as sent, a token
never lands in the stored headers or query."""

from __future__ import annotations

import pytest

from hooks.models import Event
from tests.hooks import signing

BODY = b'{"id": "evt_provider_1", "type": "thing.happened", "n": 1}'


def _hmac_case(algorithm, encoding, prefix):
    verification = {"header": "X-Signature", "algorithm": algorithm, "encoding": encoding}
    if prefix:
        verification["prefix"] = prefix
    headers = {"X-Signature": signing.plain_hmac("hm", BODY, algorithm, encoding, prefix)}
    return pytest.param("hmac", "hm", verification, headers,
                        id=f"hmac-{algorithm}-{encoding}-{'prefix' if prefix else 'bare'}")


KINDS = [
    pytest.param("none", None, {}, {}, id="none"),
    pytest.param("github", signing.GITHUB_SECRET, {},
                 {"X-Hub-Signature-256": signing.GITHUB_SIGNATURE}, id="github-documented"),
    pytest.param("stripe", signing.STRIPE_SECRET, {}, None, id="stripe"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET, {}, None, id="standard_webhooks"),
    pytest.param("shopify", signing.SHOPIFY_SECRET, {},
                 signing.shopify(signing.SHOPIFY_SECRET, BODY), id="shopify"),
    *[_hmac_case(a, e, p) for a in ("sha1", "sha256", "sha512") for e in ("hex", "base64")
      for p in ("", f"{a}=")],
]


@pytest.mark.parametrize(("kind", "secret", "verification", "headers"), KINDS)
async def test_signed_webhook_is_accepted(client, make_source, kind, secret, verification,
                                          headers):
    await make_source("src", kind=kind, secret=secret, verification=verification)
    body = signing.GITHUB_BODY if kind == "github" else BODY
    if kind == "stripe":
        headers = signing.stripe(signing.STRIPE_SECRET, body)
    elif kind == "standard_webhooks":
        headers = signing.standard_webhooks(signing.STANDARD_SECRET, body)
    answer = await client.post("/in/src", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    row = await Event.get(id=answer.json()["id"])
    assert bytes(row.body) == body
    for name, value in headers.items():
        assert row.headers[name.lower()] == value


@pytest.mark.parametrize(("verification", "headers"), [
    pytest.param({}, {"X-Relay-Token": "t0k3n"}, id="default-header"),
    pytest.param({"header": "X-Api-Key"}, {"X-Api-Key": "t0k3n"}, id="custom-header"),
    pytest.param({"header": "Authorization"}, {"Authorization": "Bearer t0k3n"}, id="bearer"),
])
async def test_token_header_is_checked_and_not_stored(client, admin, make_source, verification,
                                                      headers):
    await make_source("tok", kind="token", secret="t0k3n", verification=verification)
    refused = await client.post("/in/tok", content=BODY,
                                headers={name: value.replace("t0k3n", "wrong")
                                         for name, value in headers.items()})
    assert refused.status_code == 401
    answer = await client.post("/in/tok", content=BODY, headers={**headers, "X-Other": "kept"})
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["headers"]["x-other"] == "kept"
    for name in headers:
        assert name.lower() not in event["headers"]
    assert "t0k3n" not in str(event)
    row = await Event.get(id=answer.json()["id"])
    assert "t0k3n" not in str(row.headers)


@pytest.mark.parametrize("query", [
    "key=t0k3n", "a=1&key=t0k3n&b=2", "key=t0k3n&key=t0k3n", "k%65y=t0k3n&a=1",
])
async def test_token_query_param_is_checked_and_not_stored(client, admin, make_source, query):
    await make_source("tokq", kind="token", secret="t0k3n", verification={"query_param": "key"})
    assert (await client.post("/in/tokq?key=nope", content=BODY)).status_code == 401
    assert (await client.post("/in/tokq", content=BODY,
                              headers={"X-Relay-Token": "t0k3n"})).status_code == 401
    answer = await client.post(f"/in/tokq?{query}", content=BODY)
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert "t0k3n" not in event["query"]
    expected_rest = "&".join(part for part in query.split("&") if "t0k3n" not in part)
    assert event["query"] == expected_rest


async def test_query_string_is_stored_raw(client, admin, make_source):
    await make_source("q")
    answer = await client.post("/in/q?b=2&a=%20x&a=y", content=b"{}")
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["query"] == "b=2&a=%20x&a=y"
    assert event["method"] == "POST"


async def test_hop_by_hop_headers_are_not_stored(client, admin, make_source):
    await make_source("hop")
    answer = await client.post("/in/hop", content=b"{}", headers={
        "Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "1", "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic eA==", "X-Repeated": "a", "X-Keep": "yes"})
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    headers = event["headers"]
    assert headers["x-keep"] == "yes"
    for dropped in ("connection", "x-drop-me", "keep-alive", "proxy-authorization", "host",
                    "content-length"):
        assert dropped not in headers
    assert all(name == name.lower() for name in headers)

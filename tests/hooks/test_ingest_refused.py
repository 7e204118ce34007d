"""Refused webhooks: 401, no event, and the refused request kept for debugging (capped)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from hooks.models import RejectedRequest
from tests.hooks import signing

BODY = b'{"id": "evt_9", "type": "charge.succeeded"}'
NOW = int(time.time())
"""Only for timestamps hours away from the tolerance: a slow run cannot make them valid.
Timestamps near the tolerance are signed when the test runs (`_fresh`)."""


def _fresh(sign: Callable[[int], dict[str, str]]) -> Callable[[], dict[str, str]]:
    return lambda: sign(int(time.time()))

REFUSALS = [
    pytest.param("github", signing.GITHUB_SECRET,
                 signing.github("not the secret", BODY), "X-Hub-Signature-256", id="github-bad"),
    pytest.param("github", signing.GITHUB_SECRET, {}, "missing X-Hub-Signature-256",
                 id="github-missing"),
    pytest.param("stripe", signing.STRIPE_SECRET,
                 _fresh(lambda now: signing.stripe("whsec_other", BODY, timestamp=now)),
                 "no v1 signature", id="stripe-bad"),
    pytest.param("stripe", signing.STRIPE_SECRET,
                 signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW - 3600), "too old",
                 id="stripe-stale"),
    pytest.param("stripe", signing.STRIPE_SECRET,
                 signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW + 3600), "future",
                 id="stripe-future"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET,
                 signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW - 600),
                 "too old", id="standard-webhooks-stale"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET,
                 _fresh(lambda now: signing.standard_webhooks(signing.STANDARD_SECRET, BODY,
                                                      timestamp=now + 600)),
                 "future", id="standard-webhooks-future"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET, {},
                 "missing webhook-id", id="standard-webhooks-missing"),
    pytest.param("shopify", signing.SHOPIFY_SECRET, signing.shopify("other", BODY),
                 "X-Shopify-Hmac-Sha256", id="shopify-bad"),
    pytest.param("token", "t0k3n", {"X-Relay-Token": "guess"}, "token does not match",
                 id="token-bad"),
]


@pytest.mark.parametrize(("kind", "secret", "headers", "reason"), REFUSALS)
async def test_refused_request_is_401_and_kept_not_stored(client, admin, make_source,
                                                          event_count, kind, secret, headers,
                                                          reason):
    source = await make_source("src", kind=kind, secret=secret)
    headers = headers() if callable(headers) else headers
    answer = await client.post("/in/src", content=BODY,
                               headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 401, answer.text
    assert reason in answer.json()["detail"]
    assert await event_count() == 0

    listed = await client.get(f"/api/v1/sources/{source['id']}/rejected", headers=admin)
    assert listed.status_code == 200
    [kept] = listed.json()["data"]
    assert set(kept) == {"id", "received_at", "reason", "headers", "body_preview", "size"}
    assert reason in kept["reason"]
    assert kept["body_preview"] == BODY.decode()
    assert kept["size"] == len(BODY)
    assert kept["headers"]["content-type"] == "application/json"
    for name, value in headers.items():
        if kind != "token":
            assert kept["headers"][name.lower()] == value
    assert kept["received_at"].endswith("+00:00")


async def test_preview_is_the_first_8_kib(client, admin, make_source):
    source = await make_source("big", kind="shopify", secret="s")
    body = b"x" * 8192 + b"y" * 12000
    assert (await client.post("/in/big", content=body)).status_code == 401
    [kept] = (await client.get(f"/api/v1/sources/{source['id']}/rejected",
                               headers=admin)).json()["data"]
    assert kept["body_preview"] == "x" * 8192
    assert kept["size"] == len(body)


async def test_refused_requests_are_capped_at_60_per_source_per_minute(
        client, admin, make_source, event_count):
    capped = await make_source("flood", kind="shopify", secret="s")
    other = await make_source("other", kind="shopify", secret="s")
    answers = await asyncio.gather(*[
        client.post("/in/flood", content=b"%d" % n, headers={"X-Shopify-Hmac-Sha256": "bad"})
        for n in range(70)
    ])
    assert [answer.status_code for answer in answers] == [401] * 70
    assert await RejectedRequest.filter(source_id=capped["id"]).count() == 60
    listed = await client.get(f"/api/v1/sources/{capped['id']}/rejected?limit=100",
                              headers=admin)
    assert len(listed.json()["data"]) == 60
    assert listed.json()["next_cursor"] is None

    assert (await client.post("/in/other", content=b"{}")).status_code == 401
    assert await RejectedRequest.filter(source_id=other["id"]).count() == 1
    assert await event_count() == 0


async def test_rejected_of_unknown_source_is_404(client, admin):
    answer = await client.get("/api/v1/sources/src_00000000000000000000000000/rejected",
                              headers=admin)
    assert answer.status_code == 404


async def test_refused_requests_older_than_7_days_are_not_listed(client, admin, make_source):
    from datetime import UTC, datetime, timedelta

    from kernel.ids import new_id

    source = await make_source("old", kind="token", secret="t")
    for age in (timedelta(days=8), timedelta(days=6)):
        await RejectedRequest.create(id=new_id("rej"), source_id=source["id"],
                                     received_at=datetime.now(UTC) - age, reason=str(age),
                                     body_preview=b"", size=0)
    listed = await client.get(f"/api/v1/sources/{source['id']}/rejected", headers=admin)
    assert [kept["reason"] for kept in listed.json()["data"]] == [str(timedelta(days=6))]

"""Unauthenticated input built to break ingest gets a clear answer, never a 500: absurd
signature timestamps are a 401, bodies nested past the limit are opaque to rules."""

from __future__ import annotations

import json

import pytest

from tests.hooks import signing

BODY = b'{"id": "evt_9", "type": "charge.succeeded"}'
HUGE = 10 ** 400


@pytest.mark.parametrize(("kind", "secret", "headers"), [
    pytest.param("stripe", signing.STRIPE_SECRET,
                 signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=HUGE), id="stripe-400-digits"),
    pytest.param("stripe", signing.STRIPE_SECRET,
                 signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=-HUGE),
                 id="stripe-negative-400-digits"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET,
                 signing.standard_webhooks_raw(signing.STANDARD_SECRET, BODY, timestamp=HUGE),
                 id="standard-400-digits"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET,
                 {**signing.standard_webhooks_raw(signing.STANDARD_SECRET, BODY),
                  "webhook-timestamp": "1_700_000_000"}, id="standard-underscores"),
])
async def test_absurd_signature_timestamps_are_refused(client, make_source, event_count, kind,
                                                       secret, headers):
    await make_source("src", kind=kind, secret=secret)
    answer = await client.post("/in/src", content=BODY,
                               headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 401, answer.text
    assert "not a whole number of seconds" in answer.json()["detail"]
    assert await event_count() == 0


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b'{"type": "deep"}' + b"}" * depth


@pytest.mark.parametrize("depth", [100_000, 500])
async def test_deeply_nested_bodies_are_stored_opaque_to_rules(client, admin, make_source,
                                                              depth):
    await make_source("deep", event_type={"json_path": "type"}, dedup={"json_path": "id"})
    body = b'{"type": "order.paid", "id": "d1", "x": ' + _nested(depth) + b"}"
    answer = await client.post("/in/deep", content=body,
                               headers={"content-type": "application/json"})
    assert answer.status_code == 202, answer.text[:300]
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["event_type"] is None
    assert event["size"] == len(body)


async def test_a_body_within_the_depth_limit_still_feeds_rules(client, admin, make_source):
    await make_source("shallow", event_type={"json_path": "type"})
    body = json.dumps({"type": "order.paid", "x": json.loads(_nested(100))}).encode()
    answer = await client.post("/in/shallow", content=body,
                               headers={"content-type": "application/json"})
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["event_type"] == "order.paid"

"""Event types: each kind's default rule and configured header / json_path rules."""

from __future__ import annotations

import json

import pytest

from hooks.models import Event
from tests.hooks import signing

BODY = json.dumps({"id": "evt_x", "type": "invoice.paid",
                   "data": {"object": {"kind": "refund", "n": 3}}}).encode()


@pytest.mark.parametrize(("kind", "secret", "headers", "expected"), [
    pytest.param("github", "gh", {**signing.github("gh", BODY), "x-github-event": "push"}, "push",
                 id="github-x-github-event"),
    pytest.param("stripe", signing.STRIPE_SECRET, None, "invoice.paid", id="stripe-body-type"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET, None, "invoice.paid",
                 id="standard-webhooks-body-type"),
    pytest.param("shopify", signing.SHOPIFY_SECRET,
                 {**signing.shopify(signing.SHOPIFY_SECRET, BODY),
                  "x-shopify-topic": "orders/create"}, "orders/create", id="shopify-topic"),
    pytest.param("none", None, {"x-github-event": "push"}, None, id="none-has-no-default"),
])
async def test_default_event_type_per_kind(client, admin, make_source, kind, secret, headers,
                                           expected):
    await make_source("src", kind=kind, secret=secret)
    if kind == "stripe":
        headers = signing.stripe(signing.STRIPE_SECRET, BODY)
    elif kind == "standard_webhooks":
        headers = signing.standard_webhooks(signing.STANDARD_SECRET, BODY)
    answer = await client.post("/in/src", content=BODY, headers=headers)
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["event_type"] == expected


@pytest.mark.parametrize(("rule", "headers", "expected"), [
    pytest.param({"header": "X-Event-Name"}, {"x-event-name": "user.created"}, "user.created",
                 id="header"),
    pytest.param({"header": "X-Event-Name"}, {}, None, id="header-missing"),
    pytest.param({"json_path": "data.object.kind"}, {}, "refund", id="json-path"),
    pytest.param({"json_path": "data.object.n"}, {}, "3", id="json-path-number"),
    pytest.param({"json_path": "data.object"}, {}, None, id="json-path-to-an-object"),
    pytest.param({"json_path": "data.nothing.here"}, {}, None, id="json-path-missing"),
])
async def test_configured_event_type_rule(client, make_source, rule, headers, expected):
    await make_source("typed", event_type=rule)
    answer = await client.post("/in/typed", content=BODY, headers=headers)
    assert answer.status_code == 202
    assert (await Event.get(id=answer.json()["id"])).event_type == expected


async def test_configured_rule_replaces_the_kind_default(client, make_source):
    await make_source("gh", kind="github", secret="gh", event_type={"json_path": "type"})
    headers = {**signing.github("gh", BODY), "x-github-event": "push"}
    answer = await client.post("/in/gh", content=BODY, headers=headers)
    assert (await Event.get(id=answer.json()["id"])).event_type == "invoice.paid"


async def test_event_type_is_searchable(client, admin, make_source):
    await make_source("typed", event_type={"header": "x-kind"})
    for kind in ("a", "b", "a"):
        await client.post("/in/typed", content=b"{}", headers={"x-kind": kind})
    listed = await client.get("/api/v1/events?event_type=a", headers=admin)
    assert [event["event_type"] for event in listed.json()["data"]] == ["a", "a"]

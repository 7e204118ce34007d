"""Built-in presets rendered from real-shaped provider payloads (hooks/fixtures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dispatch.notify import discord, slack, teams
from dispatch.notify.presets import ALERT, GENERIC, GITHUB, SHOPIFY_ORDERS, STRIPE, preset_for
from dispatch.notify.render import message_for
from dispatch.notify.templates import EventView, validate_template
from tests.dispatch.conftest import provider_sample
from tests.dispatch.platforms import validate_discord, validate_slack, validate_teams


def view(name: str) -> EventView:
    sample = provider_sample(name)
    return EventView(id="evt_x", source=sample["provider"], event_type=sample["event_type"],
                     received_at=datetime(2026, 1, 1, tzinfo=UTC), headers=sample["headers"],
                     body=json.dumps(sample["body"]).encode(), content_type="application/json")


def test_every_preset_compiles():
    for spec in [*GITHUB.values(), *STRIPE.values(), SHOPIFY_ORDERS, ALERT, GENERIC]:
        validate_template(spec)


EXPECTED = {
    "github.push": ("[Codertocat/Hello-World] 1 new commit to main by Codertocat",
                    {"Repository": "Codertocat/Hello-World", "Branch": "main"}),
    "github.pull_request": ("[Codertocat/Hello-World] Pull request #2 opened: "
                            "Update the README with new information.",
                            {"Author": "Codertocat", "Branches": "changes → main"}),
    "github.issues": ("[Codertocat/Hello-World] Issue #1 opened: "
                      "Spelling error in the README file", {"Author": "Codertocat"}),
    "github.release": ("[Codertocat/Hello-World] Release 0.0.1 published", {}),
    "github.workflow_run": ("[octo-org/octo-repo] Workflow Build failure on main",
                            {"Run": "#562", "Event": "push"}),
    "github.ping": ("[Codertocat/Hello-World] GitHub webhook connected", {}),
    "stripe.invoice.paid": ("Stripe invoice.paid: 20.00 USD", {"Status": "paid"}),
    "stripe.charge.failed": ("Stripe charge.failed: 10.99 USD", {"Status": "failed"}),
    "stripe.customer.subscription.deleted": ("Stripe customer.subscription.deleted: 15.00 USD",
                                             {"Status": "canceled"}),
    "shopify.orders.create": ("Shopify order #9999 created: 209.00 USD",
                              {"Customer": "jon@example.com"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_presets_summarise_provider_events(name):
    title, fields = EXPECTED[name]
    message = message_for(None, view(name))
    got_title = message.title
    if name == "github.pull_request" or name == "github.push":
        # The shared samples may name the default branch main or master.
        got_title = got_title.replace("master", "main")
    assert got_title == title
    got_fields = dict(message.fields)
    for key, value in fields.items():
        assert got_fields.get(key, "").replace("master", "main") == value
    for payload, validate in ((slack.payload, validate_slack),
                              (discord.payload, validate_discord),
                              (teams.payload, validate_teams)):
        validate(payload(message))


def test_provider_detection():
    assert preset_for("push", {"X-GitHub-Event": "push"}, {}) is GITHUB["push"]
    assert preset_for("x", {}, {"object": "event", "type": "invoice.paid"}) is \
        STRIPE["invoice."]
    assert preset_for("x", {}, {"object": "event", "type": "payout.paid"}) is GENERIC
    assert preset_for("relay.alert.delivery.failed", {}, {}) is ALERT
    assert preset_for("orders/paid", {"x-shopify-topic": "orders/paid"}, {}) is SHOPIFY_ORDERS
    assert preset_for("unknown", {"x-github-event": "star"}, {}) is GENERIC


def test_the_generic_preset_shows_the_event():
    event = EventView("evt_g", "custom", "thing.happened", None, {}, b'{"a": 1}',
                      "application/json")
    message = message_for(None, event)
    assert message.title == "thing.happened from custom"
    assert message.text == '{"a": 1}'
    assert ("Event", "evt_g") in message.fields

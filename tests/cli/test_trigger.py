"""`relay trigger FIXTURE --source SLUG`: every fixture becomes an event with the
provider's event type and dedup key, and the source's own verification accepts the
stored request (sent again to /in/<slug>, it is recognised as the same event)."""

from __future__ import annotations

import json

import pytest

from hooks.samples import fixtures
from tests.dispatch.conftest import make_source

SOURCES = {
    "github": {"kind": "github", "secret": "gh-secret"},
    "stripe": {"kind": "stripe", "secret": "whsec_stripe_test_secret"},
    "shopify": {"kind": "shopify", "secret": "shpss_test_secret"},
    "standard_webhooks": {"kind": "standard_webhooks",
                          "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
}


def expected_dedup_key(provider: str, event: dict) -> str:
    if provider == "github":
        return event["headers"]["x-github-delivery"]
    if provider == "stripe":
        return json.loads(event["body"])["id"]
    if provider == "shopify":
        return event["headers"]["x-shopify-webhook-id"]
    return event["headers"]["webhook-id"]


@pytest.mark.parametrize("name", sorted(fixtures()))
async def test_every_fixture(name, client, admin, run_cli):
    fixture = fixtures()[name]
    slug = fixture.provider.replace("_", "-")
    await make_source(client, admin, slug, verification=SOURCES[fixture.provider])

    result = await run_cli("trigger", name, "--source", slug, "--json")
    assert result.code == 0, result.stderr
    event_id = result.json()["id"]
    event = (await client.get(f"/api/v1/events/{event_id}", headers=admin)).json()
    assert event["source"] == slug
    assert event["event_type"] == fixture.event_type
    assert event["dedup_key"] == expected_dedup_key(fixture.provider, event)
    assert event["dedup_key"]

    again = await client.post(f"/in/{slug}", content=event["body"].encode(),
                              headers=event["headers"])
    assert again.status_code == 200, again.text
    assert again.json() == {"id": event_id, "duplicate": True}

    second = await run_cli("trigger", name, "--source", slug, "--json")
    assert second.json()["id"] != event_id


async def test_fixtures_listing_and_unknown_names(client, admin, run_cli):
    listed = await run_cli("fixtures", "--json")
    assert listed.code == 0
    names = {item["name"] for item in listed.json()}
    assert {"github.push", "stripe.invoice.paid", "shopify.orders.create",
            "standard_webhooks.invoice.paid"} <= names and len(names) == len(fixtures())

    await make_source(client, admin, "gh", verification=SOURCES["github"])
    unknown = await run_cli("trigger", "github.nope", "--source", "gh")
    assert unknown.code == 1 and "github.push" in unknown.stderr
    no_source = await run_cli("trigger", "github.push", "--source", "missing")
    assert no_source.code == 1 and "no source with slug 'missing'" in no_source.stderr

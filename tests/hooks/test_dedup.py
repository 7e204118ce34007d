"""Duplicates: each kind's default dedup rule, configured rules, the dedup window, and
concurrent repeats of one webhook."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from hooks.models import Event
from kernel.ids import new_id
from tests.hooks import signing


def _github(delivery: str, body: bytes) -> dict[str, str]:
    return {**signing.github("gh", body), "x-github-delivery": delivery}


def _stripe(delivery: str, body: bytes) -> dict[str, str]:
    return signing.stripe(signing.STRIPE_SECRET, body)


def _standard(delivery: str, body: bytes) -> dict[str, str]:
    return signing.standard_webhooks(signing.STANDARD_SECRET, body, message_id=delivery)


def _shopify(delivery: str, body: bytes) -> dict[str, str]:
    return {**signing.shopify(signing.SHOPIFY_SECRET, body), "x-shopify-webhook-id": delivery}


DEFAULT_RULES = [
    pytest.param("github", "gh", _github, id="github-x-github-delivery"),
    pytest.param("stripe", signing.STRIPE_SECRET, _stripe, id="stripe-body-id"),
    pytest.param("standard_webhooks", signing.STANDARD_SECRET, _standard,
                 id="standard-webhooks-webhook-id"),
    pytest.param("shopify", signing.SHOPIFY_SECRET, _shopify, id="shopify-x-shopify-webhook-id"),
]


@pytest.mark.parametrize(("kind", "secret", "sign"), DEFAULT_RULES)
async def test_default_rule_per_kind(client, make_source, event_count, kind, secret, sign):
    await make_source("src", kind=kind, secret=secret)

    async def post(key: str, extra: str = "") -> dict:
        body = json.dumps({"id": key, "type": "t", "extra": extra}).encode()
        answer = await client.post("/in/src", content=body, headers=sign(key, body))
        assert answer.status_code in (200, 202), answer.text
        return {"status": answer.status_code, **answer.json()}

    first = await post("key-1")
    assert first["status"] == 202
    again = await post("key-1", extra="a retry may differ in detail")
    assert again == {"status": 200, "id": first["id"], "duplicate": True}
    other = await post("key-2")
    assert other["status"] == 202
    assert await event_count() == 2
    assert (await Event.get(id=first["id"])).dedup_key == "key-1"


@pytest.mark.parametrize(("kind", "secret", "headers"), [
    pytest.param("none", None, {}, id="none"),
    pytest.param("token", "t", {"x-relay-token": "t"}, id="token"),
    pytest.param("hmac", "k", {"x-sig": signing.plain_hmac("k", b'{"id": "same"}')}, id="hmac"),
])
async def test_no_dedup_by_default_for_plain_kinds(client, make_source, event_count, kind, secret,
                                                   headers):
    verification = {"header": "x-sig"} if kind == "hmac" else {}
    await make_source("plain", kind=kind, secret=secret, verification=verification)
    answers = [await client.post("/in/plain", content=b'{"id": "same"}', headers=headers)
               for _ in range(2)]
    assert [answer.status_code for answer in answers] == [202, 202]
    assert answers[0].json()["id"] != answers[1].json()["id"]
    assert await event_count(dedup_key=None) == 2


async def test_configured_header_rule(client, make_source, event_count):
    await make_source("hdr", dedup={"header": "X-Request-Id"})
    first = await client.post("/in/hdr", content=b"1", headers={"x-request-id": "r1"})
    again = await client.post("/in/hdr", content=b"2", headers={"X-REQUEST-ID": "r1"})
    other = await client.post("/in/hdr", content=b"3", headers={"x-request-id": "r2"})
    missing = await client.post("/in/hdr", content=b"4")
    missing_again = await client.post("/in/hdr", content=b"4")
    assert [first.status_code, again.status_code, other.status_code] == [202, 200, 202]
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert [missing.status_code, missing_again.status_code] == [202, 202]
    assert await event_count() == 4


async def test_configured_json_path_rule(client, make_source, event_count):
    await make_source("jp", dedup={"json_path": "data.object.id"})

    async def post(payload) -> int:
        return (await client.post("/in/jp", content=json.dumps(payload).encode())).status_code

    assert await post({"data": {"object": {"id": "obj_1"}}, "n": 1}) == 202
    assert await post({"data": {"object": {"id": "obj_1"}}, "n": 2}) == 200
    assert await post({"data": {"object": {"id": 42}}}) == 202
    assert await post({"data": {"object": {"id": 42}}}) == 200
    assert await post({"data": {"object": {}}}) == 202
    assert await post({"data": {"object": {}}}) == 202
    assert (await client.post("/in/jp", content=b"not json")).status_code == 202
    assert await event_count() == 5
    assert await event_count(dedup_key="42") == 1


async def test_configured_rule_replaces_the_kind_default(client, make_source, event_count):
    await make_source("ghc", kind="github", secret="gh", dedup={"json_path": "hook_id"})
    body = b'{"hook_id": 5}'
    first = await client.post("/in/ghc", content=body, headers=_github("d-1", body))
    second = await client.post("/in/ghc", content=body, headers=_github("d-2", body))
    assert [first.status_code, second.status_code] == [202, 200]
    assert await event_count(dedup_key="5") == 1


async def test_dedup_is_per_source(client, make_source, event_count):
    await make_source("a", dedup={"header": "x-id"})
    await make_source("b", dedup={"header": "x-id"})
    for slug in ("a", "b"):
        answer = await client.post(f"/in/{slug}", content=b"{}", headers={"x-id": "same"})
        assert answer.status_code == 202
    assert await event_count() == 2


async def _old_event(source: dict, key: str, age: timedelta) -> str:
    event_id = new_id("evt")
    await Event.create(id=event_id, source_id=source["id"], source_slug=source["slug"],
                       dedup_key=key, received_at=datetime.now(UTC) - age, body=b"{}")
    return event_id


async def test_duplicate_outside_the_window_is_a_new_event(client, make_source, event_count):
    source = await make_source("win", dedup={"header": "x-id"})
    await _old_event(source, "stale", timedelta(hours=24, minutes=1))
    recent = await _old_event(source, "recent", timedelta(hours=23, minutes=59))

    stale_again = await client.post("/in/win", content=b"{}", headers={"x-id": "stale"})
    assert stale_again.status_code == 202
    recent_again = await client.post("/in/win", content=b"{}", headers={"x-id": "recent"})
    assert recent_again.json() == {"id": recent, "duplicate": True}
    assert await event_count() == 3


async def test_window_follows_the_setting(client, make_source):
    source = await make_source("setting", dedup={"header": "x-id"})
    await _old_event(source, "k", timedelta(minutes=10))
    with override_settings(RELAY_DEDUP_WINDOW=3600):
        assert (await client.post("/in/setting", content=b"{}",
                                  headers={"x-id": "k"})).status_code == 200
    with override_settings(RELAY_DEDUP_WINDOW=300):
        assert (await client.post("/in/setting", content=b"{}",
                                  headers={"x-id": "k"})).status_code == 202


async def test_concurrent_identical_posts_store_one_event(client, make_source, event_count):
    await make_source("race", kind="github", secret="gh")
    body = b'{"zen": "Design for failure."}'
    headers = _github("same-delivery", body)
    answers = await asyncio.gather(*[
        client.post("/in/race", content=body, headers=headers) for _ in range(20)
    ])
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 19 + [202]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await event_count() == 1

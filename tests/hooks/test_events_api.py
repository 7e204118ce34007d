"""`/api/v1/events`: search, one event, and publishing without a source."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from hooks.models import Event


async def test_event_detail_has_the_wire_fields(client, admin, make_source):
    await make_source("wire", event_type={"header": "x-kind"}, dedup={"header": "x-id"})
    posted = await client.post("/in/wire?x=1", content=b'{"a": 1}', headers={
        "content-type": "application/json", "x-kind": "thing", "x-id": "k1"})
    event = (await client.get(f"/api/v1/events/{posted.json()['id']}", headers=admin)).json()
    assert set(event) == {"id", "source", "event_type", "dedup_key", "received_at", "method",
                          "query", "headers", "content_type", "size", "body", "body_base64",
                          "deliveries"}
    assert event["source"] == "wire"
    assert event["event_type"] == "thing"
    assert event["dedup_key"] == "k1"
    assert event["query"] == "x=1"
    assert event["content_type"] == "application/json"
    assert event["size"] == 8
    assert event["body"] == '{"a": 1}'
    assert isinstance(event["deliveries"], list)
    assert datetime.fromisoformat(event["received_at"]).utcoffset() == timedelta(0)


async def test_publish_stores_the_payload_as_json(client, admin, event_count):
    payload = {"user": {"id": 7, "name": "Zo\u00eb"}, "tags": ["a", "b"]}
    answer = await client.post("/api/v1/events", headers=admin,
                               json={"event_type": "user.created", "payload": payload})
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) == {"id"}
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["source"] is None
    assert event["event_type"] == "user.created"
    assert event["content_type"] == "application/json"
    assert json.loads(base64.b64decode(event["body_base64"])) == payload
    assert await event_count() == 1


async def test_publish_with_the_same_idempotency_key_is_a_duplicate(client, admin, event_count):
    body = {"event_type": "order.paid", "payload": {"order": 1}}
    first = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "ord-1"},
                              json=body)
    again = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "ord-1"},
                              json=body)
    other = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "ord-2"},
                              json=body)
    without = [await client.post("/api/v1/events", headers=admin, json=body) for _ in range(2)]
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert other.status_code == 202
    assert [answer.status_code for answer in without] == [202, 202]
    assert await event_count() == 4


@pytest.mark.parametrize("changed", [
    {"event_type": "order.paid", "payload": {"order": "other"}},
    {"event_type": "order.refunded", "payload": {"order": 1}},
])
async def test_an_idempotency_key_reused_for_another_request_is_a_conflict(
        client, admin, event_count, changed):
    body = {"event_type": "order.paid", "payload": {"order": 1}}
    first = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "ord-1"},
                              json=body)
    reused = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "ord-1"},
                               json=changed)
    assert first.status_code == 202
    assert reused.status_code == 409
    assert first.json()["id"] in reused.json()["detail"]
    assert "Idempotency-Key" in reused.json()["detail"]
    assert await event_count() == 1


async def test_idempotency_key_is_not_shared_with_sources(client, admin, make_source):
    await make_source("s", dedup={"header": "x-id"})
    assert (await client.post("/in/s", content=b"{}", headers={"x-id": "k"})).status_code == 202
    published = await client.post("/api/v1/events", headers={**admin, "Idempotency-Key": "k"},
                                  json={"event_type": "t", "payload": None})
    assert published.status_code == 202


@pytest.mark.parametrize(("payload", "headers", "field"), [
    ({"payload": {}}, {}, "event_type"),
    ({"event_type": "", "payload": {}}, {}, "event_type"),
    ({"event_type": "t" * 256, "payload": {}}, {}, "event_type"),
    ({"event_type": "t", "payload": {}}, {"Idempotency-Key": "has space"}, "Idempotency-Key"),
    ({"event_type": "t", "payload": {}}, {"Idempotency-Key": "k" * 256}, "Idempotency-Key"),
])
async def test_invalid_publish_is_422(client, admin, event_count, payload, headers, field):
    answer = await client.post("/api/v1/events", headers={**admin, **headers}, json=payload)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]
    assert await event_count() == 0


async def test_search_by_source_type_and_time(client, admin, make_source):
    await make_source("a", event_type={"header": "x-kind"})
    await make_source("b", event_type={"header": "x-kind"})
    for slug, kind in (("a", "x"), ("a", "y"), ("b", "x")):
        await client.post(f"/in/{slug}", content=b"{}", headers={"x-kind": kind})
    old = await Event.create(id="evt_0000000000aaaaaaaaaaaaaaaa", source_slug="a",
                             event_type="x", received_at=datetime.now(UTC) - timedelta(days=2),
                             body=b"{}")

    async def search(query: str) -> list[tuple]:
        answer = await client.get(f"/api/v1/events?{query}", headers=admin)
        assert answer.status_code == 200, answer.text
        return [(event["source"], event["event_type"]) for event in answer.json()["data"]]

    assert await search("source=a") == [("a", "y"), ("a", "x"), ("a", "x")]
    assert await search("source=a&event_type=x") == [("a", "x"), ("a", "x")]
    assert await search("event_type=x") == [("b", "x"), ("a", "x"), ("a", "x")]
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert await search(f"source=a&since={day_ago.replace('+00:00', 'Z')}") == [
        ("a", "y"), ("a", "x")]
    until = await client.get("/api/v1/events", headers=admin, params={"until": day_ago})
    assert [event["id"] for event in until.json()["data"]] == [old.id]
    assert await search("source=nobody") == []


@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-13-01"])
async def test_bad_times_are_422(client, admin, query):
    answer = await client.get(f"/api/v1/events?{query}", headers=admin)
    assert answer.status_code == 422
    assert query.split("=")[0] in answer.json()["detail"]

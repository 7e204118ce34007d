"""The event log's filters: source, event type (exact or prefix*), time range (id bounds),
delivery status and endpoint, a JSON filter over the body, bounded pages, 422s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from dispatch.models import Delivery
from hooks import event_search
from hooks.models import Event
from kernel.ids import id_at

NOW = datetime.now(UTC)
YESTERDAY = NOW - timedelta(days=1)


async def add_event(at: datetime, source: str | None = "shop", event_type: str | None = "order.paid",
                    body: dict | bytes | None = None) -> str:
    data = body if isinstance(body, bytes) else json.dumps(body or {"type": event_type}).encode()
    row = await Event.create(id=id_at("evt", int(at.timestamp() * 1000)), source_slug=source,
                             event_type=event_type, received_at=at, body=data, size=len(data),
                             content_type="application/json")
    return row.id


async def add_delivery(event_id: str, endpoint_id: str, status: str, at: datetime) -> str:
    row = await Delivery.create(id=id_at("dlv", int(at.timestamp() * 1000)), event_id=event_id,
                                endpoint_id=endpoint_id, status=status, created_at=at)
    return row.id


async def ids(client, admin, query: str) -> list[str]:
    answer = await client.get(f"/api/v1/events?{query}", headers=admin)
    assert answer.status_code == 200, answer.text
    return [event["id"] for event in answer.json()["data"]]


async def test_filters_by_source_type_prefix_and_time(client, admin):
    old = await add_event(YESTERDAY, "shop", "order.paid")
    new = await add_event(NOW - timedelta(minutes=1), "shop", "order.created")
    other = await add_event(NOW - timedelta(seconds=30), "bank", "payout.sent")
    assert await ids(client, admin, "source=shop") == [new, old]
    assert await ids(client, admin, "event_type=order.paid") == [old]
    assert await ids(client, admin, "event_type=order.*") == [new, old]
    assert await ids(client, admin, "event_type=order.p*") == [old]
    since = quote((NOW - timedelta(hours=2)).isoformat())
    until = quote((NOW - timedelta(hours=12)).isoformat())
    assert await ids(client, admin, f"since={since}") == [other, new]
    assert await ids(client, admin, f"until={until}") == [old]
    assert await ids(client, admin, f"since={since}&event_type=payout.*") == [other]


async def test_filters_by_delivery_status_and_endpoint(client, admin):
    failed = await add_event(YESTERDAY)
    fine = await add_event(YESTERDAY + timedelta(minutes=1))
    await add_delivery(failed, "ep_a", "failed", YESTERDAY)
    await add_delivery(failed, "ep_b", "succeeded", YESTERDAY)
    await add_delivery(fine, "ep_a", "succeeded", YESTERDAY)
    assert await ids(client, admin, "status=failed") == [failed]
    assert await ids(client, admin, "status=succeeded") == [fine, failed]
    assert await ids(client, admin, "endpoint=ep_b") == [failed]
    assert await ids(client, admin, "endpoint=ep_a&status=failed") == [failed]
    assert await ids(client, admin, "endpoint=ep_b&status=failed") == []


async def test_json_filter_over_the_body(client, admin):
    big = await add_event(YESTERDAY, body={"type": "order.paid", "data": {"amount": 5000}})
    await add_event(NOW, body={"type": "order.paid", "data": {"amount": 10}})
    await add_event(NOW, body=b"not json")
    rule = quote(json.dumps({"data.amount": {"$gt": 100}}))
    assert await ids(client, admin, f"filter={rule}") == [big]


async def test_a_page_examines_a_bounded_number_of_candidates_and_continues(
        client, admin, monkeypatch):
    monkeypatch.setattr(event_search, "CANDIDATES_PER_PAGE", 5)
    match = await add_event(YESTERDAY, body={"n": 1})
    for n in range(12):
        await add_event(NOW - timedelta(seconds=60 - n), body={"n": 0})
    rule = quote(json.dumps({"n": 1}))
    seen: list[str] = []
    pages = 0
    cursor = ""
    while True:
        answer = await client.get(f"/api/v1/events?filter={rule}&limit=10{cursor}", headers=admin)
        assert answer.status_code == 200, answer.text
        pages += 1
        seen += [event["id"] for event in answer.json()["data"]]
        if not answer.json()["next_cursor"]:
            break
        cursor = f"&cursor={answer.json()['next_cursor']}"
    assert seen == [match]
    assert pages == 3, "13 candidates at 5 per page"


async def test_pages_of_a_plain_search_follow_the_cursor(client, admin):
    made = [await add_event(NOW - timedelta(seconds=10 - n)) for n in range(5)]
    first = (await client.get("/api/v1/events?limit=3", headers=admin)).json()
    assert [e["id"] for e in first["data"]] == made[:1:-1]
    second = (await client.get(f"/api/v1/events?limit=3&cursor={first['next_cursor']}",
                               headers=admin)).json()
    assert [e["id"] for e in second["data"]] == made[1::-1]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(("query", "named"), [
    ("sorce=shop", "sorce"),
    ("status=broken", "status"),
    ("event_type=a*b", "event_type"),
    ("filter=%7Bnot-json", "filter"),
    ("filter=" + quote(json.dumps({"a": {"$regex": "x"}})), "$regex"),
    ("filter=" + quote(json.dumps([1])), "filter"),
    ("since=yesterday", "since"),
    ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ("limit=0", "limit"),
])
async def test_bad_searches_are_422_naming_the_problem(client, admin, query, named):
    answer = await client.get(f"/api/v1/events?{query}", headers=admin)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]

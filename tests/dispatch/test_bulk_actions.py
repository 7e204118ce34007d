"""Bulk retry and bulk replay: a dry run counts, the real run answers 202 with the count and
the dispatcher delivers them; batches; 422s and 404s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch import queue
from dispatch.models import Delivery
from tests.dispatch.conftest import make_endpoint, wait_for_statuses
from tests.hooks.test_event_search import add_delivery, add_event
from tests.servers import wait_until

NOW = datetime.now(UTC)
YESTERDAY = NOW - timedelta(days=1)


async def _count(status: str, expected: int) -> bool:
    return await Delivery.filter(status=status).count() == expected


async def test_bulk_retry_counts_then_requeues_and_delivers(client, admin, sink, dispatcher,
                                                            monkeypatch):
    monkeypatch.setattr(queue, "BULK_BATCH", 2)
    endpoint = await make_endpoint(client, admin, sink.url())
    other = await make_endpoint(client, admin, sink.url("/other"))
    made = []
    for n in range(5):
        event = await add_event(YESTERDAY + timedelta(seconds=n))
        made.append(await add_delivery(event, endpoint["id"], "failed",
                                       YESTERDAY + timedelta(seconds=n)))
    event = await add_event(YESTERDAY)
    await add_delivery(event, other["id"], "failed", YESTERDAY)
    old = await add_event(NOW - timedelta(days=3))
    await add_delivery(old, endpoint["id"], "failed", NOW - timedelta(days=3))
    body = {"endpoint_id": endpoint["id"], "statuses": ["failed"],
            "since": (NOW - timedelta(days=2)).isoformat(), "until": NOW.isoformat()}
    dry = await client.post("/api/v1/deliveries/retry?dry_run=true", headers=admin, json=body)
    assert (dry.status_code, dry.json()) == (200, {"count": 5})
    assert await Delivery.filter(status="failed").count() == 7
    answer = await client.post("/api/v1/deliveries/retry", headers=admin, json=body)
    assert (answer.status_code, answer.json()) == (202, {"count": 5})
    await wait_until(lambda: _count("succeeded", 5), message="5 deliveries to succeed")
    assert sorted(r.delivery_id for r in sink.received()) == sorted(made)
    assert await Delivery.filter(status="failed").count() == 2


async def test_bulk_replay_counts_then_replays_matching_events(client, admin, sink, dispatcher):
    endpoint = await make_endpoint(client, admin, sink.url())
    wanted = [await add_event(YESTERDAY + timedelta(seconds=n), "shop", "order.paid",
                              {"type": "order.paid", "total": 100 + n}) for n in range(3)]
    await add_event(YESTERDAY, "shop", "order.created")
    await add_event(YESTERDAY, "bank", "order.paid")
    body = {"source": "shop", "event_type": "order.p*", "filter": {"total": {"$gte": 101}},
            "since": (NOW - timedelta(days=2)).isoformat()}
    dry = await client.post("/api/v1/events/replay?dry_run=true", headers=admin, json=body)
    assert (dry.status_code, dry.json()["count"]) == (200, 2)
    answer = await client.post("/api/v1/events/replay", headers=admin,
                               json={**body, "endpoint_id": endpoint["id"]})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"count": 2, "deliveries": 2}
    await wait_for_statuses("succeeded", 2)
    assert sorted(r.headers["webhook-id"] for r in sink.received()) == sorted(wanted[1:])


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/api/v1/deliveries/retry", {"statuses": ["succeeded"]}, "statuses"),
    ("/api/v1/deliveries/retry", {"statuses": []}, "statuses"),
    ("/api/v1/deliveries/retry", {"statuses": ["failed"], "endpoint": "x"}, "endpoint"),
    ("/api/v1/deliveries/retry", {"statuses": ["failed"], "since": "2026-01-02T00:00:00Z",
                                  "until": "2026-01-01T00:00:00Z"}, "until"),
    ("/api/v1/events/replay", {"sorce": "shop"}, "sorce"),
    ("/api/v1/events/replay", {"status": "lost"}, "status"),
    ("/api/v1/events/replay", {"filter": {"a": {"$regex": "b"}}}, "$regex"),
])
async def test_bad_bulk_requests_are_422(client, admin, path, body, named):
    answer = await client.post(path, headers=admin, json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]


async def test_bulk_actions_need_an_admin_and_a_known_endpoint(client, admin, viewer):
    missing = "ep_00000000000000000000000000"
    answer = await client.post("/api/v1/deliveries/retry", headers=viewer,
                               json={"statuses": ["failed"]})
    assert answer.status_code == 403
    answer = await client.post("/api/v1/deliveries/retry", headers=admin,
                               json={"statuses": ["failed"], "endpoint_id": missing})
    assert answer.status_code == 404
    answer = await client.post("/api/v1/events/replay", headers=admin,
                               json={"endpoint_id": missing})
    assert answer.status_code == 404

"""The delivery log's filters: endpoint, event, one or several statuses, time range; bounded
pages for endpoint + status; 422 for an unknown parameter or status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from dispatch import delivery_search
from tests.hooks.test_event_search import add_delivery, add_event

NOW = datetime.now(UTC)
YESTERDAY = NOW - timedelta(days=1)


async def ids(client, admin, query: str) -> list[str]:
    answer = await client.get(f"/api/v1/deliveries?{query}", headers=admin)
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["data"]]


async def test_filters_by_endpoint_event_statuses_and_time(client, admin):
    event = await add_event(YESTERDAY)
    old_failed = await add_delivery(event, "ep_a", "failed", YESTERDAY)
    old_ok = await add_delivery(event, "ep_b", "succeeded", YESTERDAY + timedelta(seconds=1))
    retrying = await add_delivery(event, "ep_a", "retrying", NOW - timedelta(minutes=1))
    assert await ids(client, admin, "endpoint=ep_a") == [retrying, old_failed]
    assert await ids(client, admin, f"event={event}") == [retrying, old_ok, old_failed]
    assert await ids(client, admin, "status=failed") == [old_failed]
    assert await ids(client, admin, "status=failed,retrying") == [retrying, old_failed]
    assert await ids(client, admin, "status=failed,succeeded&limit=1") == [old_ok]
    assert await ids(client, admin, "endpoint=ep_a&status=failed") == [old_failed]
    since = quote((NOW - timedelta(hours=1)).isoformat())
    until = quote((NOW - timedelta(hours=1)).isoformat())
    assert await ids(client, admin, f"since={since}") == [retrying]
    assert await ids(client, admin, f"until={until}&endpoint=ep_a") == [old_failed]


async def test_merged_status_pages_follow_the_cursor(client, admin):
    event = await add_event(YESTERDAY)
    made = [await add_delivery(event, "ep_a", ("failed", "retrying")[n % 2],
                               YESTERDAY + timedelta(seconds=n)) for n in range(5)]
    first = (await client.get("/api/v1/deliveries?status=failed,retrying&limit=3",
                              headers=admin)).json()
    assert [row["id"] for row in first["data"]] == made[:1:-1]
    second = (await client.get(f"/api/v1/deliveries?status=failed,retrying&limit=3"
                               f"&cursor={first['next_cursor']}", headers=admin)).json()
    assert [row["id"] for row in second["data"]] == made[1::-1]
    assert second["next_cursor"] is None


async def test_endpoint_and_status_examine_a_bounded_window(client, admin, monkeypatch):
    monkeypatch.setattr(delivery_search, "CANDIDATES_PER_PAGE", 4)
    event = await add_event(YESTERDAY)
    failed = await add_delivery(event, "ep_a", "failed", YESTERDAY)
    for n in range(9):
        await add_delivery(event, "ep_a", "succeeded", YESTERDAY + timedelta(seconds=n + 1))
    pages, seen, cursor = 0, [], ""
    while True:
        answer = (await client.get(f"/api/v1/deliveries?endpoint=ep_a&status=failed{cursor}",
                                   headers=admin)).json()
        pages += 1
        seen += [row["id"] for row in answer["data"]]
        if not answer["next_cursor"]:
            break
        cursor = f"&cursor={answer['next_cursor']}"
    assert seen == [failed]
    assert pages == 3


@pytest.mark.parametrize(("query", "named"), [
    ("endpont=ep_a", "endpont"),
    ("status=failed,lost", "lost"),
    ("since=soon", "since"),
    ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
])
async def test_bad_searches_are_422_naming_the_problem(client, admin, query, named):
    answer = await client.get(f"/api/v1/deliveries?{query}", headers=admin)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]

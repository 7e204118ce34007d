"""A page of events stops early at 8 MiB of bodies, whatever `limit` asks; `next_cursor`
goes on from there, so every event is still listed exactly once."""

from __future__ import annotations

from tortoise import connections

from relay.api import PAGE_BODY_BYTES

MIB = 1024 * 1024
EVENTS = """
INSERT INTO event (id, received_at, method, query, headers, content_type, size, body)
SELECT 'evt_' || lpad(n::text, 26, '0'), now(), 'POST', '', '{}', 'application/json',
       $3::int, convert_to(repeat('x', $3::int), 'UTF8')
FROM generate_series($1::int, $2::int) AS n
"""


async def test_a_page_of_large_events_stops_at_8_mib(client, viewer):
    await connections.get("default").execute_query(EVENTS, [1, 20, MIB])
    seen: list[str] = []
    pages: list[int] = []
    cursor = ""
    while True:
        answer = await client.get(f"/api/v1/events?limit=250{cursor}", headers=viewer)
        assert answer.status_code == 200
        page = answer.json()
        pages.append(len(page["data"]))
        seen.extend(event["id"] for event in page["data"])
        assert len(answer.content) < 3 * PAGE_BODY_BYTES
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert pages == [8, 8, 4]
    assert len(seen) == len(set(seen)) == 20
    assert seen == sorted(seen, reverse=True)


async def test_one_event_larger_than_the_budget_still_gets_its_page(client, viewer):
    await connections.get("default").execute_query(EVENTS, [1, 2, PAGE_BODY_BYTES + 1])
    first = (await client.get("/api/v1/events?limit=5", headers=viewer)).json()
    assert len(first["data"]) == 1 and first["next_cursor"]
    second = (await client.get(f"/api/v1/events?limit=5&cursor={first['next_cursor']}",
                               headers=viewer)).json()
    assert len(second["data"]) == 1 and second["next_cursor"] is None


async def test_small_events_fill_the_limit(client, viewer):
    await connections.get("default").execute_query(EVENTS, [1, 30, 100])
    page = (await client.get("/api/v1/events?limit=25", headers=viewer)).json()
    assert len(page["data"]) == 25 and page["next_cursor"]

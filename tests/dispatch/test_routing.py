"""Routing turns every event into its deliveries exactly once, whatever other routers do
at the same time (real PostgreSQL)."""

from __future__ import annotations

import asyncio

from dispatch.models import Endpoint
from dispatch.queue import pooled
from dispatch.routing import Router
from tests.servers import wait_until

EVENTS = """
INSERT INTO event (id, received_at, method, query, headers, content_type, size, body,
                   event_type)
SELECT 'evt_' || lpad(n::text, 26, '0'), now(), 'POST', '', '{}', 'application/json', 0,
       convert_to('{"n": ' || n || '}', 'UTF8'), CASE WHEN n % 2 = 0 THEN 'even' ELSE 'odd' END
FROM generate_series($1::int, $2::int) AS n
"""


async def add_events(first: int, last: int) -> None:
    async with pooled() as connection:
        await connection.execute(EVENTS, first, last)


async def deliveries_per_pair() -> dict[tuple[str, str], int]:
    async with pooled() as connection:
        rows = await connection.fetch(
            "SELECT event_id, endpoint_id, count(*) AS n FROM delivery"
            " GROUP BY event_id, endpoint_id")
    return {(row["event_id"], row["endpoint_id"]): row["n"] for row in rows}


async def unrouted() -> int:
    async with pooled() as connection:
        return await connection.fetchval("SELECT count(*) FROM event WHERE routed_at IS NULL")


async def endpoint(endpoint_id: str, **fields) -> None:
    await Endpoint.create(id=endpoint_id, url="http://127.0.0.1/", secret_encrypted="x",
                          **fields)


async def test_concurrent_routers_route_every_event_exactly_once(db_left_empty):
    await endpoint("ep_all")
    await endpoint("ep_even", event_types=["even"])
    await endpoint("ep_big", filter_rule={"n": {"$gt": 1500}})
    await add_events(1, 2000)
    routers = [Router(batch=50) for _ in range(4)]
    await asyncio.gather(*(router.route_all() for router in routers))
    # A router that stopped because another was routing the same events leaves the rest
    # to it; once all have returned, one more pass finds nothing left.
    assert await routers[0].route_all() == 0
    assert await unrouted() == 0
    pairs = await deliveries_per_pair()
    assert set(pairs.values()) == {1}
    expected = {(f"evt_{n:026d}", "ep_all") for n in range(1, 2001)}
    expected |= {(f"evt_{n:026d}", "ep_even") for n in range(2, 2001, 2)}
    expected |= {(f"evt_{n:026d}", "ep_big") for n in range(1501, 2001)}
    assert set(pairs) == expected


async def test_events_locked_by_another_router_are_left_to_it(db_left_empty):
    await endpoint("ep_all")
    await add_events(1, 10)
    router = Router()
    async with pooled() as other, other.transaction():
        locked = await other.fetch(
            "SELECT id FROM event WHERE id <= $1 ORDER BY id FOR UPDATE",
            f"evt_{4:026d}")
        assert len(locked) == 4
        assert await router.route_batch() == (10, 6, 6)
        # Only the locked ones are read again, and left alone again.
        assert await router.route_batch() == (4, 0, 0)
    assert await router.route_batch() == (4, 4, 4)
    pairs = await deliveries_per_pair()
    assert len(pairs) == 10 and set(pairs.values()) == {1}


async def test_a_new_filter_is_applied_from_the_next_batch(db_left_empty):
    router = Router()
    await endpoint("ep_all")
    await add_events(1, 3)
    assert await router.route_batch() == (3, 3, 3)
    assert not router.subscriptions.any_rule
    # The first filter: the cached view read no bodies, so the batch reads them again.
    await endpoint("ep_small", filter_rule={"n": {"$lt": 6}})
    await add_events(4, 8)
    assert await router.route_batch() == (5, 5, 7)
    pairs = await deliveries_per_pair()
    assert {event for event, ep in pairs if ep == "ep_small"} == {
        f"evt_{n:026d}" for n in (4, 5)}


async def test_routing_wakes_the_dispatchers_only_when_it_created_deliveries(db_left_empty):
    await endpoint("ep_even", event_types=["even"])
    heard: list[str] = []

    def on_notify(connection, pid, channel, payload) -> None:
        heard.append(channel)

    async with pooled() as listener:
        await listener.add_listener("relay_due", on_notify)
        try:
            await add_events(1, 1)
            assert await Router().route_batch() == (1, 1, 0)
            await add_events(2, 2)
            assert await Router().route_batch() == (1, 1, 1)
            # Notifications arrive in order: had the first batch notified, it would be here.
            await wait_until(lambda: heard, timeout=5, message="the relay_due notification")
            assert heard == ["relay_due"]
        finally:
            await listener.remove_listener("relay_due", on_notify)

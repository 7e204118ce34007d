"""Routing turns every event into its deliveries exactly once, whatever other routers do
at the same time (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from dispatch.models import Endpoint
from dispatch.queue import pooled
from dispatch.routing import ROUTING_LOCK, Router
from tests.dispatch.conftest import unrouted
from tests.servers import wait_until

EVENTS = """
WITH stored AS (
    INSERT INTO event (id, received_at, method, query, headers, content_type, size, body,
                       event_type)
    SELECT 'evt_' || lpad(n::text, 26, '0'), now(), 'POST', '', '{}', 'application/json', 0,
           convert_to('{"n": ' || n || '}', 'UTF8'),
           CASE WHEN n % 2 = 0 THEN 'even' ELSE 'odd' END
    FROM generate_series($1::int, $2::int) AS n
    RETURNING id, event_type, received_at
)
INSERT INTO event_unrouted (event_id, event_type, received_at)
SELECT id, event_type, received_at FROM stored
"""
"""Events as ingest stores them: each also queued for the router."""


async def add_events(first: int, last: int) -> None:
    async with pooled() as connection:
        await connection.execute(EVENTS, first, last)


async def deliveries_per_pair() -> dict[tuple[str, str], int]:
    async with pooled() as connection:
        rows = await connection.fetch(
            "SELECT event_id, endpoint_id, count(*) AS n FROM delivery"
            " GROUP BY event_id, endpoint_id")
    return {(row["event_id"], row["endpoint_id"]): row["n"] for row in rows}


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


async def test_a_router_reads_nothing_while_another_holds_the_routing_lock(db_left_empty):
    await endpoint("ep_all")
    await add_events(1, 10)
    router = Router()
    async with pooled() as other:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", ROUTING_LOCK)
            assert await router.route_batch() == (0, 0, 0)
            assert await unrouted() == 10
        assert await router.route_batch() == (10, 10, 10)
    pairs = await deliveries_per_pair()
    assert len(pairs) == 10 and set(pairs.values()) == {1}


async def test_a_dispatcher_that_finds_another_routing_leaves_the_wake_ups_to_it(
        db_left_empty):
    """Every dispatcher is woken by each stored batch; one that found the routing lock
    taken stops answering the wake-ups (they would only find it taken again) and looks
    again after its poll interval, in case the other has stopped."""
    from dispatch.worker import Dispatcher

    await endpoint("ep_all")
    await add_events(1, 10)
    dispatcher = Dispatcher(poll_interval=0.5)
    started: list[int] = []
    passes: list[tuple[int, int, int]] = []
    route_batch = dispatcher.router.route_batch

    async def counted() -> tuple[int, int, int]:
        started.append(1)
        passes.append(await route_batch())
        return passes[-1]

    dispatcher.router.route_batch = counted  # type: ignore[method-assign]
    routing = asyncio.create_task(dispatcher.route_loop())
    try:
        async with pooled() as other, other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", ROUTING_LOCK)
            await wait_until(lambda: len(passes) == 1, message="the first routing pass")
            assert passes == [(0, 0, 0)] and dispatcher.router.other_routes
            for _ in range(20):  # a dispatcher answering wake-ups would pass again at once
                dispatcher.route_wake.set()
                await asyncio.sleep(0)
            assert len(started) == 1, passes
        # The lock is free again: the next poll routes the queued events.
        await wait_until(lambda: (10, 10, 10) in passes, message="routing after the poll")
        assert not dispatcher.router.other_routes
    finally:
        dispatcher.stopping = True
        routing.cancel()
        await asyncio.gather(routing, return_exceptions=True)
    assert await unrouted() == 0


async def test_events_another_statement_took_from_the_queue_are_not_routed_again(
        db_left_empty):
    """The routing lock keeps routers apart; should two statements take the same events
    all the same, the second waits for the first and routes only what the first left."""
    await endpoint("ep_all")
    await add_events(1, 10)
    router = Router()
    other = await asyncpg.connect(os.environ["RELAY_DATABASE_URL"])
    try:
        async with other.transaction():
            taken = await other.fetch(
                "DELETE FROM event_unrouted WHERE event_id <= $1 RETURNING event_id",
                f"evt_{4:026d}")
            assert len(taken) == 4
            routing = asyncio.create_task(router.route_batch())

            async def router_waits() -> bool:
                # Inside a transaction the activity view is read once, unless cleared.
                await other.execute("SELECT pg_stat_clear_snapshot()")
                return await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%DELETE FROM event_unrouted%' AND pid <> pg_backend_pid()"
                ) == 1

            await wait_until(router_waits, message="the router waiting for the taken rows")
            assert not routing.done()
        assert await routing == (10, 6, 6)
    finally:
        await other.close()
    pairs = await deliveries_per_pair()
    assert len(pairs) == 6 and set(pairs.values()) == {1}


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


async def test_deliveries_its_own_dispatcher_can_take_wake_no_other(db_left_empty):
    """A router with room for what it creates leaves it to its own dispatcher (woken in
    process); only more than that wakes the others."""
    await endpoint("ep_all")
    heard: list[str] = []

    def on_notify(connection, pid, channel, payload) -> None:
        heard.append(payload or "due")

    router = Router(room=lambda: 2)
    async with pooled() as listener:
        await listener.add_listener("relay_due", on_notify)
        try:
            await add_events(1, 2)
            assert await router.route_batch() == (2, 2, 2)
            await add_events(3, 5)
            assert await router.route_batch() == (3, 3, 3)
            await wait_until(lambda: heard, timeout=5, message="the relay_due notification")
            # Notifications arrive in order: the first batch's would be here too.
            assert heard == ["due"]
        finally:
            await listener.remove_listener("relay_due", on_notify)

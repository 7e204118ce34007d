"""The routing dispatcher sends the deliveries it has room for as it makes them: no claim
leases them, and exactly one attempt reaches the subscriber (real PostgreSQL, HTTP)."""

from __future__ import annotations

from dispatch.metrics import STARTED
from tests.dispatch.conftest import (
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)
from tests.servers import wait_until

EVENTS = 20


async def watch_claims(dispatcher) -> list[int]:
    """The number of deliveries each of the dispatcher's claims leased."""
    leased: list[int] = []
    real = dispatcher.claim

    async def claim(*args, **kwargs):
        result = await real(*args, **kwargs)
        leased.append(result[0])
        return result

    dispatcher.claim = claim
    return leased


def started(path: str) -> float:
    return STARTED.labels(path)._value.get()


async def test_what_the_routing_dispatcher_has_room_for_is_sent_without_a_claim(
        client, admin, sink, start_dispatcher):
    routed, claimed = started("routed"), started("claimed")
    dispatcher = await start_dispatcher()
    leased = await watch_claims(dispatcher)
    await make_source(client, admin, "shop")
    paths = [sink.path(), sink.path()]
    for path in paths:
        await make_endpoint(client, admin, sink.url(path))
    for n in range(EVENTS):
        await post_event(client, "shop", {"n": n})
    rows = await wait_for_statuses("succeeded", 2 * EVENTS)
    assert sum(leased) == 0, leased
    assert {row.attempts_count for row in rows} == {1}
    assert [sink.count(path) for path in paths] == [EVENTS, EVENTS]
    assert not sink.overlaps
    # What operators see: every delivery started as routed, none claimed.
    assert (started("routed") - routed, started("claimed") - claimed) == (2 * EVENTS, 0)


def most_at_once(sink, path: str) -> int:
    """The most requests to `path` the sink was answering at the same time."""
    edges = sorted(edge for r in sink.received(path)
                   for edge in ((r.at, 1), (r.answered_at or float("inf"), -1)))
    most = current = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        current += step
        most = max(most, current)
    return most


async def test_a_burst_waits_its_turn_behind_the_gate_and_the_rest_is_claimed(
        client, admin, sink, start_dispatcher):
    """Six events for an endpoint taking two requests at a time, routed in one pass: two
    are sent at once, two wait in the routing dispatcher for the places the first two
    free (no claim, no queue), the last two are left due and claimed. Never more than
    two at the endpoint at once, each delivered once."""
    await make_source(client, admin, "shop")
    path = sink.path()
    sink.respond(path, 200, delay=0.2)
    await make_endpoint(client, admin, sink.url(path), max_in_flight=2)
    for n in range(6):
        await post_event(client, "shop", {"n": n})
    routed, claimed = started("routed"), started("claimed")
    await start_dispatcher()
    rows = await wait_for_statuses("succeeded", 6)
    assert {row.attempts_count for row in rows} == {1}
    assert sink.count(path) == 6 and not sink.overlaps
    assert most_at_once(sink, path) == 2
    # Sent as routing made them (two at once, two after waiting) and through claims.
    assert (started("routed") - routed, started("claimed") - claimed) == (4, 2)


async def test_deliveries_waiting_their_turn_are_handed_back_at_shutdown(
        client, admin, sink, start_dispatcher):
    """A dispatcher stopping with deliveries waiting behind a gate puts them back due
    (not left leased until the lease runs out): a dispatcher started next sends them."""
    from dispatch.states import DELIVERING

    await make_source(client, admin, "shop")
    path = sink.path()
    sink.respond(path, 200, delay=0.5)
    await make_endpoint(client, admin, sink.url(path), max_in_flight=1)
    for n in range(2):
        await post_event(client, "shop", {"n": n})
    first = await start_dispatcher(shutdown_grace=5.0)
    await wait_until(lambda: sink.count(path) == 1 and first.behind,
                     message="one delivery sent, the other waiting its turn")
    await first.stop()
    rows = await deliveries_of()
    assert sorted(row.status for row in rows) == ["pending", "succeeded"]
    assert not any(row.status == DELIVERING or row.lease_owner for row in rows)
    await start_dispatcher()
    await wait_for_statuses("succeeded", 2)
    assert sink.count(path) == 2 and not sink.overlaps

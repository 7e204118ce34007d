"""The routing dispatcher sends the deliveries it has room for as it makes them: no claim
leases them, and exactly one attempt reaches the subscriber (real PostgreSQL, HTTP)."""

from __future__ import annotations

from dispatch.metrics import STARTED
from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses

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


async def test_what_does_not_fit_is_left_due_and_claimed(client, admin, sink,
                                                         start_dispatcher):
    """An endpoint taking one request at a time: routing hands its dispatcher the first
    delivery, the others wait in the queue for claims, one at a time."""
    dispatcher = await start_dispatcher()
    leased = await watch_claims(dispatcher)
    await make_source(client, admin, "shop")
    path = sink.path()
    sink.respond(path, 200, delay=0.05)
    await make_endpoint(client, admin, sink.url(path), max_in_flight=1)
    for n in range(5):
        await post_event(client, "shop", {"n": n})
    rows = await wait_for_statuses("succeeded", 5)
    assert {row.attempts_count for row in rows} == {1}
    assert sink.count(path) == 5 and not sink.overlaps
    assert 1 <= sum(leased) <= 4, leased

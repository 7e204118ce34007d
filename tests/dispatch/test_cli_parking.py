"""Deliveries of a `cli` endpoint wait parked (out of the due index the dispatchers'
claims walk) until a `relay listen` pulls them, whatever the endpoint goes through."""

from __future__ import annotations

from dispatch import actions, cli
from dispatch.models import Delivery
from tests.dispatch.conftest import make_source, post_event, wait_for_statuses


async def parked_and_due() -> tuple[int, int]:
    waiting = Delivery.filter(status__in=["pending", "retrying"])
    return (await waiting.filter(next_attempt_at=None).count(),
            await waiting.filter(next_attempt_at__not_isnull=True).count())


async def test_a_listener_backlog_stays_out_of_the_due_index(client, admin, dispatcher):
    await make_source(client, admin, "shop")
    registered = await client.post("/api/v1/cli/listen", headers=admin,
                                   json={"forward_to": "http://127.0.0.1:3000/", "name": "lap"})
    endpoint_id = registered.json()["endpoint"]["id"]
    for n in range(3):
        await post_event(client, "shop", {"type": "order.paid", "n": n})
    await wait_for_statuses("pending", 3)
    assert await parked_and_due() == (3, 0)

    handout = await cli.hand_out(endpoint_id, "cli-test")
    assert isinstance(handout, cli.Handout)
    await cli.give_back("cli-test", handout)
    assert await parked_and_due() == (3, 0)

    await actions.set_endpoint_enabled(endpoint_id, False)
    assert await cli.hand_out(endpoint_id, "cli-test") is None
    await actions.set_endpoint_enabled(endpoint_id, True)
    assert await parked_and_due() == (3, 0)
    again = await cli.hand_out(endpoint_id, "cli-test")
    assert isinstance(again, cli.Handout) and again.job.id == handout.job.id

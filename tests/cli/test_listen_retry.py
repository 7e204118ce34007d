"""A local handler that is down, or answers 500, gets the normal retry schedule: each try
is recorded as an attempt (error `connect`, or the status), and the delivery succeeds
once the handler is back."""

from __future__ import annotations

from dispatch.models import Attempt
from tests.dispatch.conftest import Sink, make_source, post_event, wait_for_statuses
from tests.servers import wait_until


async def _attempts(delivery_id: str) -> list[Attempt]:
    return await Attempt.filter(delivery_id=delivery_id).order_by("number")


async def test_handler_down_then_up(client, admin, dispatcher, start_cli):
    await make_source(client, admin, "shop")
    handler = Sink()
    listen = await start_cli("listen", "--forward-to", handler.url("/hook"), "--name", "dev",
                             "--json")
    await listen.wait_for_stderr("Connected")
    endpoint = (await client.get("/api/v1/endpoints", headers=admin)).json()["data"][0]
    await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin,
                       json={"retry_schedule": [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 60]})

    event_id = await post_event(client, "shop")
    [delivery] = await wait_for_statuses("retrying", 1, event_id=event_id)

    async def refused_attempt() -> bool:
        return any(a.error == "connect" for a in await _attempts(delivery.id))

    await wait_until(refused_attempt, message="an attempt refused by the closed port")
    await handler.start()
    try:
        await wait_for_statuses("succeeded", 1, event_id=event_id, timeout=15)
    finally:
        await handler.stop()
    attempts = await _attempts(delivery.id)
    assert attempts[0].error == "connect" and attempts[0].status_code is None
    assert attempts[-1].status_code == 200 and attempts[-1].error is None
    assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
    assert handler.count() == 1
    lines = listen.json_lines()
    assert lines[0]["error"] == "connect" and lines[0]["status"] == "retrying"
    assert lines[0]["next_attempt_at"] is not None
    assert lines[-1]["status_code"] == 200 and lines[-1]["status"] == "succeeded"


async def test_handler_500_retried_then_failed(client, admin, sink, dispatcher, start_cli):
    await make_source(client, admin, "shop")
    path = sink.path()
    sink.respond(path, 500)
    listen = await start_cli("listen", "--forward-to", sink.url(path), "--json")
    await listen.wait_for_stderr("Connected")
    event_id = await post_event(client, "shop")
    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id, timeout=15)
    attempts = await _attempts(delivery.id)
    assert len(attempts) == 4  # the first try and the test schedule's three retries
    assert all(a.status_code == 500 for a in attempts)
    assert sink.count(path) == 4
    await wait_until(lambda: len(listen.json_lines()) == 4, message="four lines")
    assert listen.json_lines()[-1]["status"] == "failed"

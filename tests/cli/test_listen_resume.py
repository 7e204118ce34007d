"""Deliveries made while no `relay listen` is connected wait, and arrive on reconnect in
the order the events were received, once each."""

from __future__ import annotations

from tests.dispatch.conftest import make_source, post_event, wait_for_statuses
from tests.servers import wait_until


async def test_three_events_while_stopped_arrive_in_order_once(client, admin, sink, dispatcher,
                                                               start_cli):
    await make_source(client, admin, "shop")
    path = sink.path()
    args = ("listen", "--forward-to", sink.url(path), "--name", "laptop", "--json")
    first = await start_cli(*args)
    await first.wait_for_stderr("Connected")
    assert any("Registered listener 'laptop'" in line for line in first.stderr)
    assert await first.stop() == 0
    assert any("resume with --name" in line for line in first.stderr)

    event_ids = [await post_event(client, "shop", {"type": "order.paid", "n": n})
                 for n in range(3)]
    await wait_for_statuses("pending", 3)
    assert sink.count(path) == 0

    second = await start_cli(*args)
    await second.wait_for_stderr("Resumed listener 'laptop'")
    await wait_until(lambda: sink.count(path) >= 3, timeout=15, message="three deliveries")
    await wait_for_statuses("succeeded", 3)
    assert [r.headers["webhook-id"] for r in sink.received(path)] == event_ids
    # The CLI prints its line after the answer is reported: wait for the third.
    await wait_until(lambda: len(second.json_lines()) >= 3, timeout=15,
                     message="three lines from relay listen")
    assert [line["event_id"] for line in second.json_lines()] == event_ids
    assert sink.count(path) == 3


async def test_resuming_keeps_one_endpoint(client, admin):
    body = {"forward_to": "http://127.0.0.1:3000/webhooks", "name": "laptop"}
    created = await client.post("/api/v1/cli/listen", headers=admin, json=body)
    resumed = await client.post("/api/v1/cli/listen", headers=admin,
                                json={**body, "sources": ["gh"]})
    assert (created.status_code, resumed.status_code) == (201, 200)
    assert created.json()["endpoint"]["id"] == resumed.json()["endpoint"]["id"]
    assert created.json()["secret"] == resumed.json()["secret"]
    assert resumed.json()["endpoint"]["sources"] == ["gh"]
    other = await client.post("/api/v1/cli/listen", headers=admin,
                              json={"forward_to": "http://127.0.0.1:3000/"})
    assert other.status_code == 201
    assert other.json()["name"].startswith("listen-")
    assert other.json()["endpoint"]["id"] != created.json()["endpoint"]["id"]


async def test_listen_registration_is_validated(client, admin, viewer):
    bad = await client.post("/api/v1/cli/listen", headers=admin,
                            json={"forward_to": "ftp://127.0.0.1/"})
    assert bad.status_code == 422
    bad = await client.post("/api/v1/cli/listen", headers=admin,
                            json={"forward_to": "http://127.0.0.1/", "sources": ["Not A Slug"]})
    assert bad.status_code == 422
    refused = await client.post("/api/v1/cli/listen", headers=viewer,
                                json={"forward_to": "http://127.0.0.1/"})
    assert refused.status_code == 403

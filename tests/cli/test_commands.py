"""The listing and action commands against a real Relay: `--json` output parses and
carries the API's objects; the text output names what happened."""

from __future__ import annotations

from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses
from tests.servers import wait_until


async def test_events_event_replay_retry(client, admin, sink, dispatcher, run_cli):
    await make_source(client, admin, "shop")
    path = sink.path()
    endpoint = await make_endpoint(client, admin, sink.url(path))
    first = await post_event(client, "shop", {"type": "order.paid"})
    second = await post_event(client, "shop", {"type": "order.refunded"})
    [delivery] = await wait_for_statuses("succeeded", 1, event_id=first)

    listed = await run_cli("events", "--json")
    assert listed.code == 0
    assert [event["id"] for event in listed.json()] == [second, first]
    only = await run_cli("events", "--json", "--limit", "1", "--source", "shop")
    assert [event["id"] for event in only.json()] == [second]
    text = await run_cli("events")
    assert first in text.stdout and "SOURCE" in text.stdout

    shown = await run_cli("event", first, "--json")
    assert shown.json()["id"] == first
    assert shown.json()["deliveries"][0]["id"] == delivery.id
    assert delivery.id in (await run_cli("event", first)).stdout

    replayed = await run_cli("replay", first, "--endpoint", endpoint["id"], "--json")
    assert replayed.code == 0 and replayed.json()["count"] == 1
    await wait_until(lambda: sink.count(path) == 3, message="the replay's delivery")

    retried = await run_cli("retry", delivery.id, "--json")
    assert retried.code == 0 and retried.json()["id"] == delivery.id
    await wait_until(lambda: sink.count(path) == 4, message="the retry's delivery")

    missing = await run_cli("event", "evt_missing")
    assert missing.code == 1 and "no event with id" in missing.stderr


async def test_tail_shows_the_live_feed(client, admin, live_bus, start_cli):
    await make_source(client, admin, "shop")
    await make_source(client, admin, "other")
    tail = await start_cli("tail", "--source", "shop", "--json")

    async def delivered() -> bool:
        await post_event(client, "other")
        await post_event(client, "shop")
        return any(line.get("type") == "event.received" for line in tail.json_lines())

    await wait_until(delivered, timeout=15, interval=0.2, message="an event.received line")
    received = [line for line in tail.json_lines() if line.get("type") == "event.received"]
    assert {line["event"]["source"] for line in received} == {"shop"}


async def test_unreachable_server(cli_env, run_cli):
    from tests.servers import free_port

    result = await run_cli("events", env={**cli_env,
                                          "RELAY_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.code == 1 and "cannot reach Relay" in result.stderr

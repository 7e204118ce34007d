"""Alerts: the API, firing once per cooldown per subject, clearing once, several
dispatchers not firing twice, and alerts never raised about their own endpoints."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from dispatch.actions import set_endpoint_enabled
from dispatch.alerts import AlertEvaluator
from tests.dispatch.conftest import (
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)
from tests.servers import wait_until

GONE = "the endpoint answered 410 Gone"


async def make_alert(client, admin, **fields) -> dict:
    answer = await client.post("/api/v1/alerts", headers=admin, json=fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def alert_events() -> list[dict]:
    from hooks.models import Event

    rows = await Event.filter(event_type__startswith="relay.alert.").order_by("id")
    return [json.loads(bytes(row.body)) for row in rows]


async def test_alert_api_round_trip(client, admin, viewer, platforms):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    alert = await make_alert(client, admin, name="ops", notify=[channel["id"]], conditions=[
        {"type": "endpoint.disabled"},
        {"type": "endpoint.failure_rate", "above": 0.25, "endpoints": ["ep_a"]}])
    assert set(alert) == {"id", "name", "enabled", "conditions", "notify", "cooldown_seconds",
                          "created_at", "updated_at"}
    assert alert["id"].startswith("alr_") and alert["cooldown_seconds"] == 900
    assert alert["conditions"][1] == {"type": "endpoint.failure_rate", "above": 0.25,
                                      "window_seconds": 300, "min_attempts": 20,
                                      "endpoints": ["ep_a"]}
    url = f"/api/v1/alerts/{alert['id']}"
    assert (await client.get(url, headers=viewer)).json() == alert
    listed = await client.get("/api/v1/alerts", headers=viewer)
    assert [a["id"] for a in listed.json()["data"]] == [alert["id"]]
    patched = await client.patch(url, headers=admin, json={"enabled": False,
                                                           "cooldown_seconds": 60})
    assert patched.json()["enabled"] is False and patched.json()["cooldown_seconds"] == 60
    assert (await client.delete(url, headers=viewer)).status_code == 403
    assert (await client.delete(url, headers=admin)).status_code == 204
    assert (await client.get(url, headers=admin)).status_code == 404


async def test_alert_api_refuses_bad_input(client, admin, platforms):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    cases = [
        ({"conditions": [{"type": "nope"}]}, "conditions: [0].type: must be one of"),
        ({"conditions": []}, "at least one condition"),
        ({"conditions": [{"type": "endpoint.failure_rate", "above": 2}]}, "above"),
        ({"conditions": [{"type": "source.rejections", "endpoints": ["x"]}]},
         "narrowed by sources"),
        ({"conditions": [{"type": "delivery.failed", "colour": 1}]}, "unknown key 'colour'"),
        ({"notify": ["ep_missing"]}, "no endpoint with id 'ep_missing'"),
        ({"notify": []}, "notify"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
    ]
    for change, problem in cases:
        body = {"name": "x", "notify": [channel["id"]],
                "conditions": [{"type": "delivery.failed"}], **change}
        answer = await client.post("/api/v1/alerts", headers=admin, json=body)
        assert answer.status_code == 422, (change, answer.text)
        assert problem in answer.json()["detail"], (change, answer.json())


async def test_fires_once_per_cooldown_and_once_when_it_clears(client, admin, platforms,
                                                               sink, dispatcher):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    watched = await make_endpoint(client, admin, sink.url("/w"))
    await make_alert(client, admin, name="disabled endpoints", notify=[channel["id"]],
                     cooldown_seconds=600, conditions=[{"type": "endpoint.disabled"}])
    evaluator = AlertEvaluator(interval=3600)
    now = datetime.now(UTC)

    assert await evaluator.evaluate(now) == []
    await set_endpoint_enabled(watched["id"], False, GONE)
    assert len(await evaluator.evaluate(now)) == 1
    assert await evaluator.evaluate(now + timedelta(seconds=1)) == []
    await set_endpoint_enabled(watched["id"], True)
    assert len(await evaluator.evaluate(now + timedelta(seconds=2))) == 1
    # Disabled again within the cooldown: nothing until the cooldown has passed.
    await set_endpoint_enabled(watched["id"], False, GONE)
    assert await evaluator.evaluate(now + timedelta(seconds=3)) == []
    assert len(await evaluator.evaluate(now + timedelta(seconds=601))) == 1

    fired, resolved, again = await alert_events()
    assert fired["type"] == "relay.alert.endpoint.disabled" and fired["state"] == "firing"
    assert fired["subject"] == watched["id"] and GONE in fired["message"]
    assert resolved["state"] == "resolved" and again["state"] == "firing"
    # Each is delivered to the alert's endpoint like any event.
    await wait_until(lambda: len(platforms.of("slack")) == 3, message="three alert messages")
    texts = [got.payload["text"] for got in platforms.of("slack")]
    assert texts == ["🚨 Alert: disabled endpoints", "✅ Resolved: disabled endpoints",
                     "🚨 Alert: disabled endpoints"]
    fired_list = await client.get("/api/v1/alerts/fired", headers=admin)
    [row] = fired_list.json()["data"]
    assert row["subject"] == watched["id"] and row["firing"] is True


async def test_endpoints_turned_off_by_hand_do_not_alert(client, admin, platforms, sink, db):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    watched = await make_endpoint(client, admin, sink.url("/w"))
    await make_alert(client, admin, name="x", notify=[channel["id"]],
                     conditions=[{"type": "endpoint.disabled"}])
    await client.post(f"/api/v1/endpoints/{watched['id']}/disable", headers=admin)
    assert await AlertEvaluator(3600).evaluate() == []


async def test_several_dispatchers_fire_once(client, admin, platforms, sink, db):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    watched = [await make_endpoint(client, admin, sink.url(f"/w{n}")) for n in range(3)]
    await make_alert(client, admin, name="x", notify=[channel["id"]],
                     conditions=[{"type": "endpoint.disabled"}])
    for endpoint in watched:
        await set_endpoint_enabled(endpoint["id"], False, GONE)
    now = datetime.now(UTC)
    results = await asyncio.gather(*(AlertEvaluator(3600).evaluate(now) for _ in range(4)))
    assert sum(len(sent) for sent in results) == 3
    assert sorted(e["subject"] for e in await alert_events()) == sorted(w["id"] for w in watched)


async def test_failed_deliveries_alert_and_the_alert_channel_never_does(
        client, admin, platforms, sink, start_dispatcher):
    await start_dispatcher(alert_interval=0.2)
    await make_source(client, admin, "shop", event_type={"json_path": "type"})
    # The alert's own channel is a deleted Slack webhook: its deliveries fail too.
    channel = await make_endpoint(client, admin, platforms.url("slack", "gone"), kind="slack",
                                  retry_schedule=[], event_types=["relay.alert.*"])
    platforms.deleted.add("/slack/gone")
    failing = await make_endpoint(client, admin, sink.url("/down"), retry_schedule=[],
                                  event_types=["order.*"])
    sink.respond("/down", 500)
    await make_alert(client, admin, name="failures", notify=[channel["id"]],
                     conditions=[{"type": "delivery.failed"}, {"type": "endpoint.disabled"}])
    event_id = await post_event(client, "shop", {"type": "order.paid"})
    await wait_for_statuses("failed", 1, event_id=event_id)

    async def alerted() -> bool:
        return len(await alert_events()) >= 1

    await wait_until(alerted, message="the delivery.failed alert")
    [alert] = await alert_events()
    assert alert["type"] == "relay.alert.delivery.failed"
    assert alert["subject"] == failing["id"] and "HTTP 500" in alert["message"]
    # The alert's delivery to its own (dead) channel fails, and the channel gets disabled:
    # neither raises another alert.
    from dispatch.models import Endpoint

    async def channel_disabled() -> bool:
        return not (await Endpoint.get(id=channel["id"])).enabled

    await wait_until(channel_disabled, message="the dead channel to be disabled")
    for _ in range(3):
        await AlertEvaluator(3600).evaluate()
    assert len(await alert_events()) == 1


async def test_failure_rate_and_its_recovery(client, admin, platforms, sink, dispatcher):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack",
                                  event_types=["relay.alert.*"])
    await make_source(client, admin, "shop", event_type={"json_path": "type"})
    flaky = await make_endpoint(client, admin, sink.url("/flaky"), retry_schedule=[],
                                event_types=["order.*"])
    await make_alert(client, admin, name="rate", notify=[channel["id"]], conditions=[
        {"type": "endpoint.failure_rate", "above": 0.5, "window_seconds": 60,
         "min_attempts": 4}])
    sink.respond("/flaky", 503, 503, 503, 200)
    for n in range(4):
        await post_event(client, "shop", {"type": "order.paid", "n": n})
    await wait_until(lambda: sink.count("/flaky") == 4, message="four attempts")

    async def settled() -> bool:
        from dispatch.models import Attempt

        return await Attempt.filter(endpoint_id=flaky["id"]).count() == 4

    await wait_until(settled, message="the attempts recorded")
    evaluator = AlertEvaluator(3600)
    [sent] = await evaluator.evaluate()
    [alert] = await alert_events()
    assert alert["observed"] == {"attempts": 4, "failures": 3, "rate": 0.75}
    assert "failed 3 of 4 attempts (75%)" in alert["message"]
    assert await evaluator.evaluate() == []


async def test_source_rejections(client, admin, platforms, db):
    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    await make_source(client, admin, "locked", verification={
        "kind": "token", "header": "x-token", "secret": "right"})
    await make_source(client, admin, "other")
    await make_alert(client, admin, name="refused", notify=[channel["id"]], conditions=[
        {"type": "source.rejections", "above": 2, "window_seconds": 60,
         "sources": ["locked"]}])
    for _ in range(3):
        answer = await client.post("/in/locked", content=b"{}",
                                   headers={"x-token": "wrong"})
        assert answer.status_code == 401
    [sent] = await AlertEvaluator(3600).evaluate()
    [alert] = await alert_events()
    assert alert["subject"] == "locked" and alert["observed"] == {"count": 3}
    assert alert["type"] == "relay.alert.source.rejections"


def test_the_failure_window_covers_the_last_seconds_in_whole_minutes():
    from datetime import UTC, datetime

    from dispatch.alerts import failure_window

    now = datetime(2026, 12, 6, 10, 30, 45, tzinfo=UTC)
    assert failure_window(now, 300) == (datetime(2026, 12, 6, 10, 25, tzinfo=UTC),
                                        datetime(2026, 12, 6, 10, 31, tzinfo=UTC))


async def test_circuit_opened_fires_and_resolves_when_it_closes(client, admin, platforms, sink,
                                                                db):
    from dispatch.models import Endpoint

    channel = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")
    watched = await make_endpoint(client, admin, sink.url("/w"))
    await make_alert(client, admin, name="circuits", notify=[channel["id"]],
                     conditions=[{"type": "endpoint.circuit_opened"}])
    evaluator = AlertEvaluator(3600)
    now = datetime.now(UTC)
    assert await evaluator.evaluate(now) == []
    await Endpoint.filter(id=watched["id"]).update(circuit_opened_at=now,
                                                   consecutive_failures=5)
    assert len(await evaluator.evaluate(now)) == 1
    await Endpoint.filter(id=watched["id"]).update(circuit_opened_at=None,
                                                   consecutive_failures=0)
    assert len(await evaluator.evaluate(now + timedelta(seconds=1))) == 1
    fired, resolved = await alert_events()
    assert fired["type"] == "relay.alert.endpoint.circuit_opened"
    assert fired["subject"] == watched["id"] and fired["observed"] == {"failures": 5}
    assert resolved["state"] == "resolved"

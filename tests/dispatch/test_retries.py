"""Settling attempts: retries on a short schedule, Retry-After, timeouts, 3xx, 410, recover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kernel.bus import bus
from tests.dispatch.conftest import (
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)
from tests.servers import wait_until

FAST = [0.05, 0.05, 0.05]


def bus_messages(kind: str, delivery_id: str) -> list[dict]:
    return [m["delivery"] for m in list(bus._queue)
            if m.get("type") == kind and m["delivery"]["id"] == delivery_id]


async def test_flaky_endpoint_ends_succeeded_with_every_attempt_recorded(
        client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/flaky", 500, 503, 200, headers={"X-Answer": "Yes"}, body=b"answer body")
    endpoint = await make_endpoint(client, admin, sink.url("/flaky"), retry_schedule=FAST)
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    received = sink.received("/flaky")
    assert [r.attempt for r in received] == [1, 2, 3]
    assert {r.headers["webhook-id"] for r in received} == {event_id}
    assert {r.headers["x-relay-delivery-id"] for r in received} == {delivery.id}

    detail = (await client.get(f"/api/v1/deliveries/{delivery.id}", headers=admin)).json()
    assert detail["status"] == "succeeded"
    assert detail["attempts_count"] == 3
    assert detail["endpoint_id"] == endpoint["id"]
    attempts = detail["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert all(a["error"] is None for a in attempts)
    assert attempts[0]["response_headers"]["x-answer"] == "Yes"
    assert attempts[0]["response_body"] == "answer body"
    assert attempts[0]["request_headers"]["webhook-id"] == event_id
    assert attempts[2]["request_headers"]["x-relay-attempt"] == "3"
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert endpoint["secret"] not in str(detail)

    attempted = bus_messages("delivery.attempted", delivery.id)
    assert [m["attempt"] for m in attempted] == [1, 2, 3]
    assert attempted[0]["status"] == "retrying" and attempted[0]["next_attempt_at"]
    [succeeded] = bus_messages("delivery.succeeded", delivery.id)
    assert succeeded == {
        "id": delivery.id, "event_id": event_id, "endpoint_id": endpoint["id"],
        "status": "succeeded", "attempt": 3, "status_code": 200,
        "duration_ms": succeeded["duration_ms"], "error": None, "next_attempt_at": None,
    }


async def test_always_failing_ends_failed_then_recover_redelivers(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/down", 500)
    endpoint = await make_endpoint(client, admin, sink.url("/down"), retry_schedule=FAST)
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 4
    assert delivery.last_status_code == 500
    assert delivery.next_attempt_at is None
    assert sink.count("/down") == 4
    assert bus_messages("delivery.failed", delivery.id)

    sink.respond("/down", 200)
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/recover", headers=admin,
                               json={"since": since})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"count": 1}
    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    assert delivery.attempts_count == 5
    assert sink.received("/down")[-1].attempt == 5
    detail = (await client.get(f"/api/v1/deliveries/{delivery.id}", headers=admin)).json()
    assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 500, 500, 200]

    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/recover", headers=admin,
                               json={"since": since})
    assert answer.json() == {"count": 0}


async def test_recover_window_and_retry_start_a_fresh_schedule(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/down", 500)
    endpoint = await make_endpoint(client, admin, sink.url("/down"), retry_schedule=[0.05])
    event_id = await post_event(client, "shop")
    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 2

    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/recover", headers=admin,
                               json={"since": later})
    assert answer.json() == {"count": 0}

    answer = await client.post(f"/api/v1/deliveries/{delivery.id}/retry", headers=admin)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] in ("pending", "delivering", "retrying", "failed")
    await wait_until(lambda: sink.count("/down") == 4, message="a fresh schedule: two more tries")
    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 4


async def test_retry_after_is_honoured(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/slow-down", 429, 200, headers={"Retry-After": "1.5"})
    await make_endpoint(client, admin, sink.url("/slow-down"), retry_schedule=[1.0])
    event_id = await post_event(client, "shop")

    await wait_for_statuses("succeeded", 1, event_id=event_id)
    first, second = sink.received("/slow-down")
    gap = second.at - first.at
    # Without Retry-After the delay would be 1.0 s ± 20 %; with it, 1.5 s.
    assert 1.45 <= gap < 2.5, gap


async def test_timeout_is_an_attempt_and_retried(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/sleepy", 200, 200, delays=[3.0, 0.0])
    await make_endpoint(client, admin, sink.url("/sleepy"), retry_schedule=[0.05],
                        timeout_seconds=0.4)
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    detail = (await client.get(f"/api/v1/deliveries/{delivery.id}", headers=admin)).json()
    first, second = detail["attempts"]
    assert first["error"] == "timeout" and first["status_code"] is None
    assert 350 <= first["duration_ms"] < 2000
    assert second["status_code"] == 200 and second["error"] is None


async def test_redirect_is_a_failure_and_not_followed(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/moved", 302, headers={"Location": sink.url("/elsewhere")})
    await make_endpoint(client, admin, sink.url("/moved"), retry_schedule=[0.05])
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.last_status_code == 302
    assert sink.count("/moved") == 2
    assert sink.count("/elsewhere") == 0


async def test_gone_disables_the_endpoint_and_parks_its_deliveries(
        client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/gone", 410)
    endpoint = await make_endpoint(client, admin, sink.url("/gone"), retry_schedule=[0.05] * 5)
    event_id = await post_event(client, "shop")

    async def disabled() -> bool:
        answer = await client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)
        return answer.json()["enabled"] is False

    await wait_until(disabled, message="410 Gone to disable the endpoint")
    shown = (await client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)).json()
    assert "410" in shown["disabled_reason"]
    assert {"type": "endpoint.disabled",
            "endpoint": {"id": endpoint["id"], "disabled_reason": shown["disabled_reason"]}
            } in list(bus._queue)
    [delivery] = await deliveries_of(event_id=event_id)
    assert delivery.status == "retrying" and delivery.next_attempt_at is None
    assert sink.count("/gone") == 1

    sink.respond("/gone", 200)
    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/enable", headers=admin)
    assert answer.status_code == 200 and answer.json()["enabled"] is True
    assert answer.json()["disabled_reason"] is None
    await wait_for_statuses("succeeded", 1, event_id=event_id)
    assert sink.count("/gone") == 2


async def test_response_body_is_read_up_to_8_kib_only(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/big", 200, body=b"a" * 100_000)
    sink.respond("/endless", 200, body=b"b" * 20_000, hang_after_body=True)
    await make_endpoint(client, admin, sink.url("/big"))
    endless = await make_endpoint(client, admin, sink.url("/endless"), timeout_seconds=5)
    event_id = await post_event(client, "shop")

    deliveries = await wait_for_statuses("succeeded", 2, event_id=event_id)
    for delivery in deliveries:
        detail = (await client.get(f"/api/v1/deliveries/{delivery.id}", headers=admin)).json()
        [attempt] = detail["attempts"]
        assert len(attempt["response_body"]) == 8192
        if delivery.endpoint_id == endless["id"]:
            # The rest of that body never comes: the attempt did not wait for it.
            assert attempt["duration_ms"] < 3000


async def test_endpoint_failing_for_five_days_is_disabled(client, admin, sink, dispatcher):
    from dispatch.models import Endpoint

    await make_source(client, admin, "shop")
    sink.respond("/dying", 500)
    endpoint = await make_endpoint(client, admin, sink.url("/dying"), retry_schedule=[60])
    six_days_ago = datetime.now(UTC) - timedelta(days=6)
    await Endpoint.filter(id=endpoint["id"]).update(first_failure_at=six_days_ago,
                                                    last_success_at=six_days_ago
                                                    - timedelta(days=1))
    await post_event(client, "shop")

    async def disabled() -> bool:
        return not (await Endpoint.get(id=endpoint["id"])).enabled

    await wait_until(disabled, message="the endpoint to be disabled")
    row = await Endpoint.get(id=endpoint["id"])
    assert "5 days" in row.disabled_reason
    [delivery] = await deliveries_of(endpoint_id=endpoint["id"])
    assert delivery.status == "retrying" and delivery.next_attempt_at is None


async def test_a_success_resets_the_failing_since_clock(client, admin, sink, dispatcher):
    from dispatch.models import Endpoint

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/fine"))
    await Endpoint.filter(id=endpoint["id"]).update(
        first_failure_at=datetime.now(UTC) - timedelta(days=6))
    event_id = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 1, event_id=event_id)
    row = await Endpoint.get(id=endpoint["id"])
    assert row.enabled and row.first_failure_at is None and row.last_success_at is not None

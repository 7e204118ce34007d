"""Events reach their endpoints: bytes, headers, signature, fan-out, filters."""

from __future__ import annotations

from standardwebhooks import Webhook

from tests.dispatch.conftest import (
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)
from tests.servers import wait_until


async def test_one_event_reaches_one_endpoint(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/a"))
    body = b'{"type":"order.paid","amount":42}'
    event_id = await post_event(client, "shop", body, {"x-custom": "yes"})

    await wait_until(lambda: sink.count("/a") == 1, message="the sink to receive the event")
    [got] = sink.received("/a")
    assert got.body == body
    assert got.headers["webhook-id"] == event_id
    assert got.headers["x-custom"] == "yes"
    assert got.headers["x-relay-source"] == "shop"
    assert got.headers["x-relay-attempt"] == "1"
    Webhook(endpoint["secret"]).verify(got.body, got.headers)
    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    assert delivery.attempts_count == 1
    assert delivery.last_status_code == 200
    assert delivery.completed_at is not None


async def test_fan_out_to_every_endpoint(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    endpoints = [await make_endpoint(client, admin, sink.url(f"/fan-{n}")) for n in range(4)]
    event_id = await post_event(client, "shop")

    await wait_for_statuses("succeeded", 4, event_id=event_id)
    delivery_ids = set()
    for n, endpoint in enumerate(endpoints):
        [got] = sink.received(f"/fan-{n}")
        assert got.headers["webhook-id"] == event_id
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
        delivery_ids.add(got.delivery_id)
    assert len(delivery_ids) == 4


async def test_filters_choose_who_gets_what(client, admin, sink, dispatcher):
    typed = {"event_type": {"json_path": "type"}}
    await make_source(client, admin, "shop", **typed)
    await make_source(client, admin, "billing", **typed)
    await make_endpoint(client, admin, sink.url("/exact"), event_types=["order.paid"])
    await make_endpoint(client, admin, sink.url("/prefix"), event_types=["order.*"])
    await make_endpoint(client, admin, sink.url("/billing"), sources=["billing"])
    await make_endpoint(client, admin, sink.url("/big"), filter={"data.amount": {"$gte": 100}})
    await make_endpoint(client, admin, sink.url("/all"))
    await make_endpoint(client, admin, sink.url("/paid-or-none"),
                        filter={"$or": [{"type": {"$endsWith": ".paid"}},
                                        {"data.tags": "vip"}]})

    paid = await post_event(client, "shop", {"type": "order.paid", "data": {"amount": 50}})
    refunded = await post_event(client, "shop", {"type": "order.refunded",
                                                 "data": {"amount": 200, "tags": ["vip"]}})
    invoice = await post_event(client, "billing", {"type": "invoice.paid",
                                                   "data": {"amount": 150}})
    binary = await post_event(client, "shop", b"\xff\xfe not json \x00",
                              {"content-type": "application/octet-stream"})

    await wait_for_statuses("succeeded", 13)

    def ids(path: str) -> set[str]:
        return {r.headers["webhook-id"] for r in sink.received(path)}

    assert ids("/exact") == {paid}
    assert ids("/prefix") == {paid, refunded}
    assert ids("/billing") == {invoice}
    assert ids("/big") == {refunded, invoice}
    assert ids("/all") == {paid, refunded, invoice, binary}
    assert ids("/paid-or-none") == {paid, refunded, invoice}
    [raw] = [r for r in sink.received("/all") if r.headers["webhook-id"] == binary]
    assert raw.body == b"\xff\xfe not json \x00"
    assert raw.headers["content-type"] == "application/octet-stream"
    assert "x-relay-event-type" not in raw.headers
    [typed_one] = sink.received("/exact")
    assert typed_one.headers["x-relay-event-type"] == "order.paid"


async def test_exact_bytes_and_forwarded_headers(client, admin, sink, dispatcher):
    await make_source(client, admin, "github", event_type={"header": "x-github-event"})
    await make_endpoint(client, admin, sink.url("/exact"),
                        headers={"Authorization": "Bearer for-the-subscriber", "X-Team": "a"})
    body = bytes(range(256)) * 4
    event_id = await post_event(client, "github", body, {
        "content-type": "application/x-binary",
        "x-github-event": "push",
        "x-hub-signature-256": "sha256=provider-signature",
        "user-agent": "GitHub-Hookshot/abc",
        "webhook-id": "msg_from_the_provider",
        "webhook-signature": "v1,provider",
        "x-relay-attempt": "99",
        "x-forwarded-for": "127.0.0.9",
    })

    await wait_until(lambda: sink.count("/exact") == 1, message="the delivery")
    [got] = sink.received("/exact")
    assert got.body == body
    headers = got.headers
    assert headers["content-type"] == "application/x-binary"
    assert headers["x-hub-signature-256"] == "sha256=provider-signature"
    assert headers["x-forwarded-for"] == "127.0.0.9"
    assert headers["user-agent"].startswith("Relay/")
    assert headers["webhook-id"] == event_id
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-signature"].count("v1,") == 1
    assert headers["x-relay-attempt"] == "1"
    assert headers["x-relay-event-type"] == "push"
    assert headers["x-relay-source"] == "github"
    assert headers["authorization"] == "Bearer for-the-subscriber"
    assert headers["x-team"] == "a"
    assert headers["content-length"] == str(len(body))


async def test_disabled_endpoint_gets_nothing_and_resumes_when_enabled(
        client, admin, sink, dispatcher):
    from dispatch.models import Delivery

    await make_source(client, admin, "shop")
    paused = await make_endpoint(client, admin, sink.url("/paused"))
    await make_endpoint(client, admin, sink.url("/witness"))
    path = f"/api/v1/endpoints/{paused['id']}"
    answer = await client.post(f"{path}/disable", headers=admin)
    assert answer.status_code == 200 and answer.json()["enabled"] is False

    while_off = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 1, event_id=while_off)
    assert sink.count("/paused") == 0

    assert (await client.post(f"{path}/enable", headers=admin)).json()["enabled"] is True
    after = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 2, event_id=after)
    assert [r.headers["webhook-id"] for r in sink.received("/paused")] == [after]

    # A delivery waiting for its retry when the endpoint is disabled is parked, not lost.
    sink.respond("/paused", 500, 200)
    await client.patch(path, headers=admin, json={"retry_schedule": [0.3]})
    third = await post_event(client, "shop")
    await wait_until(lambda: sink.count("/paused") == 2, message="the first try")
    assert (await client.post(f"{path}/disable", headers=admin)).status_code == 200

    async def parked() -> bool:
        row = await Delivery.get(event_id=third, endpoint_id=paused["id"])
        return row.status == "retrying" and row.next_attempt_at is None

    await wait_until(parked, message="the retry to be parked")
    assert sink.count("/paused") == 2
    await client.post(f"{path}/enable", headers=admin)
    await wait_for_statuses("succeeded", 1, event_id=third, endpoint_id=paused["id"])
    assert sink.count("/paused") == 3


async def test_rotation_overlap_signs_with_both_secrets(client, admin, sink, dispatcher):
    from datetime import UTC, datetime, timedelta

    from dispatch.models import Endpoint

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/rotated"))
    rotated = (await client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret",
                                 headers=admin)).json()
    await post_event(client, "shop")
    await wait_until(lambda: sink.count("/rotated") == 1, message="the delivery")
    [got] = sink.received("/rotated")
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Webhook(endpoint["secret"]).verify(got.body, got.headers)
    Webhook(rotated["secret"]).verify(got.body, got.headers)

    past = datetime.now(UTC) - timedelta(seconds=1)
    await Endpoint.filter(id=endpoint["id"]).update(previous_secret_expires_at=past,
                                                    updated_at=datetime.now(UTC))
    await post_event(client, "shop", b'{"second": true}')
    await wait_until(lambda: sink.count("/rotated") == 2, message="the second delivery")
    latest = sink.received("/rotated")[1]
    assert latest.headers["webhook-signature"].count("v1,") == 1
    Webhook(rotated["secret"]).verify(latest.body, latest.headers)


async def test_an_endpoint_whose_secret_cannot_be_read_holds_up_no_other(
        client, admin, sink, dispatcher, db_left_empty):
    from datetime import UTC, datetime, timedelta

    from dispatch.models import Endpoint

    await make_source(client, admin, "shop")
    broken = await make_endpoint(client, admin, sink.url("/broken"))
    fine = await make_endpoint(client, admin, sink.url("/fine"))
    # As if stored under another RELAY_SECRET_KEY.
    await Endpoint.filter(id=broken["id"]).update(secret_encrypted="gAAAAAnot-a-token",
                                                   updated_at=datetime.now(UTC))
    for _ in range(2):
        await post_event(client, "shop")
    await wait_for_statuses("succeeded", 2, endpoint_id=fine["id"])
    assert sink.count("/fine") == 2 and sink.count("/broken") == 0

    async def both_held() -> bool:
        # The fine deliveries may be settled before a claim has looked at the second
        # broken one: wait for it to be held too.
        waiting = await deliveries_of(endpoint_id=broken["id"])
        return [row.status for row in waiting] == ["pending", "pending"] and all(
            row.attempts_count == 0 and row.next_attempt_at is not None
            and row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=30)
            for row in waiting)

    await wait_until(both_held, message="both deliveries to the broken endpoint held")
    assert sink.count("/broken") == 0
    assert dispatcher.targets.unreadable.keys() == {broken["id"]}

"""`/ws/live` over Channels' WebsocketCommunicator on Relay's whole ASGI app (in-memory layer)."""

from __future__ import annotations

import json

from django.conf import settings

from live.hub import hub
from relay.bus import LIVE_GROUP, publish
from tests.live.conftest import LiveReader, connect, make_source, post_webhook
from tests.servers import wait_until

EVENT_KEYS = {"id", "source", "event_type", "received_at", "size"}
STATS_KEYS = {"events_per_s", "deliveries_per_s", "success_rate", "pending", "in_flight",
              "p50_ms", "p95_ms"}


def session_cookie(token_id: str, scope: str = "admin", csrf: str = "c" * 32) -> str:
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from relay.api import SESSION_CSRF, SESSION_ID, SESSION_SCOPE, SESSION_TOKEN_ID

    store = SessionStore()
    store[SESSION_TOKEN_ID], store[SESSION_SCOPE], store[SESSION_CSRF] = token_id, scope, csrf
    store[SESSION_ID] = f"session-of-{token_id}"
    store.save()
    return store.session_key


async def token_row(token: str):
    from relay.crypto import hash_token
    from relay.models import ApiToken

    return await ApiToken.get(token_hash=hash_token(token))


async def test_handshake_without_a_token_is_refused(db):
    connected, communicator = await connect()
    assert not connected
    await communicator.disconnect()


async def test_handshake_with_a_bad_or_revoked_token_is_refused(db, admin_token):
    connected, communicator = await connect("/ws/live?token=rly_not-a-token")
    assert not connected
    from relay.tokens import revoke_tokens

    row = await token_row(admin_token)
    await revoke_tokens(row.id)
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    assert not connected


async def test_handshake_with_a_token_in_the_query_is_accepted(db, viewer_token):
    connected, communicator = await connect(f"/ws/live?token={viewer_token}")
    assert connected
    assert len(hub.clients) == 1
    await communicator.disconnect()


async def test_session_cookie_from_the_same_origin_is_accepted(db, admin_token):
    from relay.models import DashboardSession

    row = await token_row(admin_token)
    await DashboardSession.create(id=f"session-of-{row.id}", token_id=row.id)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(row.id)}".encode()
    same = [(b"host", b"relay.test"), (b"origin", b"http://relay.test"), (b"cookie", cookie)]
    connected, communicator = await connect(headers=same)
    assert connected
    await communicator.disconnect()

    foreign = [(b"host", b"relay.test"), (b"origin", b"https://evil.test"), (b"cookie", cookie)]
    connected, _ = await connect(headers=foreign)
    assert not connected, "another site's page must not open the stream with the cookie"

    from django.test import override_settings

    proxied = [(b"host", b"upstream:8000"), (b"origin", b"https://relay.example.com"),
               (b"cookie", cookie)]
    with override_settings(ALLOWED_HOSTS=["relay.example.com"]):
        connected, communicator = await connect(headers=proxied)
        assert connected, "an origin listed in RELAY_ALLOWED_HOSTS is this site"
        await communicator.disconnect()

    tampered = [(b"host", b"relay.test"), (b"cookie", cookie[:-3] + b"abc")]
    connected, _ = await connect(headers=tampered)
    assert not connected


async def test_messages_from_ingest_have_the_documented_shapes(client, admin, admin_token,
                                                               live_bus):
    await make_source(client, admin, "shop")
    await make_source(client, admin, "bank",
                      verification={"kind": "token", "secret": "s3cret", "header": "x-token"})
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    assert connected
    reader = LiveReader(communicator)

    event_id = await post_webhook(client, "shop", {"type": "order.paid"})
    refused = await client.post("/in/bank", content=b"{}", headers={"x-token": "wrong"})
    assert refused.status_code == 401

    received = await reader.wait_for(
        lambda m: m["type"] == "event.received" and m["event"]["id"] == event_id)
    assert set(received) == {"type", "event"}
    assert set(received["event"]) == EVENT_KEYS
    assert received["event"]["source"] == "shop"
    assert received["event"]["size"] == len(json.dumps({"type": "order.paid"}))

    rejected = await reader.wait_for(lambda m: m["type"] == "ingest.rejected")
    assert set(rejected) == {"type", "source", "reason"} and rejected["source"] == "bank"

    stats = await reader.wait_for(lambda m: m["type"] == "stats", timeout=3.5)
    assert set(stats) == {"type", "stats"} and set(stats["stats"]) == STATS_KEYS
    await communicator.disconnect()


async def test_stats_count_the_events_routed_in_the_last_minute(client, admin, admin_token):
    from dispatch.routing import Router

    await make_source(client, admin, "shop")
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    reader = LiveReader(communicator)
    idle = await reader.wait_for(lambda m: m["type"] == "stats", timeout=3.5)
    assert idle["stats"]["events_per_s"] == 0 and idle["stats"]["success_rate"] is None
    assert idle["stats"]["p50_ms"] is None and idle["stats"]["p95_ms"] is None
    for _ in range(3):
        await post_webhook(client, "shop")
    await Router().route_all()
    await reader.wait_for(lambda m: m["type"] == "stats" and m["stats"]["events_per_s"] > 0,
                          timeout=4, message="stats counting the 3 events")
    await communicator.disconnect()


async def test_subscribe_narrows_single_messages_and_items_inside_batches(db, admin_token,
                                                                          live_bus):
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    reader = LiveReader(communicator)
    await communicator.send_to(text_data=json.dumps(
        {"type": "subscribe", "sources": ["shop"], "types": ["event.received", "ingest.rejected"]}))
    ack = await reader.wait_for(lambda m: m["type"] == "subscribed")
    assert ack == {"type": "subscribed", "sources": ["shop"], "endpoints": [],
                   "types": ["event.received", "ingest.rejected"]}

    def event(n: int, source: str) -> dict:
        return {"type": "event.received", "event": {
            "id": f"evt_{n}", "source": source, "event_type": "t", "received_at": "x", "size": 1}}

    # Published back to back, these leave the bus as one batch; the consumer filters its items.
    for n in range(40):
        publish(event(n, "shop" if n % 4 == 0 else "other"))
    publish({"type": "ingest.rejected", "source": "other", "reason": "no"})
    publish({"type": "ingest.rejected", "source": "shop", "reason": "yes"})
    publish({"type": "delivery.succeeded", "delivery": {"id": "dlv_1", "event_id": "evt_0",
                                                        "endpoint_id": "ep_1"}})
    await reader.wait_for(lambda m: m.get("reason") == "yes")
    await reader.pump(timeout=0.2)
    assert any(frame["type"] == "batch" for frame in reader.frames)
    mine = {f"evt_{n}" for n in range(40)}
    live = [m for m in reader.items if m["type"] not in ("stats", "subscribed")]
    assert [m["event"]["id"] for m in live if m["type"] == "event.received"
            and m["event"]["id"] in mine] == [
        f"evt_{n}" for n in range(0, 40, 4)]
    assert [m["reason"] for m in live if m["type"] == "ingest.rejected"] == ["yes"]
    assert not [m for m in live if m["type"].startswith("delivery.")]

    await communicator.send_to(text_data=json.dumps({"type": "subscribe", "endpoints": ["ep_1"]}))
    await reader.wait_for(lambda m: m["type"] == "subscribed" and m["endpoints"] == ["ep_1"])
    publish({"type": "delivery.succeeded", "delivery": {"id": "dlv_2", "event_id": "evt_0",
                                                        "endpoint_id": "ep_1"}})
    publish({"type": "delivery.succeeded", "delivery": {"id": "dlv_3", "event_id": "evt_0",
                                                        "endpoint_id": "ep_2"}})
    await reader.wait_for(lambda m: m.get("delivery", {}).get("id") == "dlv_2")
    await reader.pump(timeout=0.2)
    assert not [m for m in reader.items if m.get("delivery", {}).get("id") == "dlv_3"]
    await communicator.disconnect()


async def test_a_malformed_client_message_gets_an_error_and_changes_nothing(db, admin_token):
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    reader = LiveReader(communicator)
    await communicator.send_to(text_data='{"type": "subscribe", "types": "x"}')
    error = await reader.wait_for(lambda m: m["type"] == "error")
    assert "types" in error["detail"]
    await communicator.send_to(text_data="not json")
    await reader.wait_for(lambda m: m["type"] == "error" and m["detail"] == "not JSON")
    assert hub.clients and next(iter(hub.clients)).subscription.everything
    await communicator.disconnect()


async def test_disconnect_leaves_the_group_and_stops_the_hub(db, admin_token, live_bus):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    first = (await connect(f"/ws/live?token={admin_token}"))[1]
    second = (await connect(f"/ws/live?token={admin_token}"))[1]
    await wait_until(lambda: hub.channel is not None, message="the hub to join the group")
    assert list(layer.groups.get(LIVE_GROUP, {})) == [hub.channel], "one membership per process"

    await first.disconnect()
    await wait_until(lambda: len(hub.clients) == 1, message="the first client to leave")
    assert hub.running and LIVE_GROUP in layer.groups
    await second.disconnect()
    await wait_until(lambda: not hub.clients and not hub.running, message="the hub to stop")
    assert not layer.groups.get(LIVE_GROUP), "the group membership must be gone"


async def test_a_revoked_token_closes_its_open_stream_with_4401(db, admin_token):
    from relay.tokens import revoke_tokens

    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    row = await token_row(admin_token)
    await revoke_tokens(row.id)
    await hub.close_revoked()
    output = None
    while output is None or output["type"] != "websocket.close":
        output = await communicator.receive_output(timeout=2)
    assert output["code"] == 4401
    await communicator.disconnect()

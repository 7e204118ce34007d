"""`/ws/cli/<endpoint_id>`: who may connect, and what happens to a delivery handed to a
client that goes away without reporting it (back to the queue, unattempted)."""

from __future__ import annotations

import base64
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dispatch.models import Attempt, Delivery
from tests.dispatch.conftest import make_source, post_event, wait_for_statuses


def _ws(relay_server: str, path: str) -> str:
    return relay_server.replace("http://", "ws://") + path


async def _listener(client, admin) -> dict:
    answer = await client.post("/api/v1/cli/listen", headers=admin,
                               json={"forward_to": "http://127.0.0.1:9/", "name": "t"})
    assert answer.status_code == 201
    return answer.json()


async def _close_code(url: str, token: str | None) -> int | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        return ws.close_code


async def test_who_may_connect(client, admin, admin_token, viewer_token, relay_server):
    listener = await _listener(client, admin)
    url = _ws(relay_server, listener["websocket_path"])
    assert await _close_code(url, None) == 4401
    assert await _close_code(url, "rly_not_a_token") == 4401
    assert await _close_code(url, viewer_token) == 4403
    assert await _close_code(_ws(relay_server, "/ws/cli/ep_unknown"), admin_token) == 4404


async def test_unreported_delivery_goes_back_on_disconnect(client, admin, admin_token,
                                                           relay_server, running_dispatcher):
    await make_source(client, admin, "shop")
    listener = await _listener(client, admin)
    event_id = await post_event(client, "shop", b'{"type":"a"}')
    await wait_for_statuses("pending", 1, event_id=event_id)
    url = _ws(relay_server, listener["websocket_path"])
    headers = {"Authorization": f"Bearer {admin_token}"}

    async with connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        handed = json.loads(await ws.recv())
        assert handed["type"] == "delivery" and handed["event_id"] == event_id
        assert base64.b64decode(handed["body"]) == b'{"type":"a"}'
        await wait_for_statuses("delivering", 1, event_id=event_id)

    [back] = await wait_for_statuses("pending", 1, event_id=event_id)
    assert back.lease_owner is None and back.attempts_count == 0
    assert not await Attempt.filter(delivery_id=back.id).exists()

    async with connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        again = json.loads(await ws.recv())
        assert again["delivery_id"] == handed["delivery_id"] and again["attempt"] == 1
        await ws.send(json.dumps({"type": "result", "delivery_id": again["delivery_id"],
                                  "status_code": 204, "headers": {}, "body": "",
                                  "duration_ms": 3.5}))
        settled = json.loads(await ws.recv())
        assert settled == {"type": "settled", "delivery_id": again["delivery_id"],
                           "status": "succeeded", "attempt": 1, "next_attempt_at": None}
    row = await Delivery.get(id=again["delivery_id"])
    assert row.status == "succeeded" and row.last_status_code == 204


async def test_malformed_result_is_refused(client, admin, admin_token, relay_server, running_dispatcher):
    await make_source(client, admin, "shop")
    listener = await _listener(client, admin)
    event_id = await post_event(client, "shop")
    await wait_for_statuses("pending", 1, event_id=event_id)
    url = _ws(relay_server, listener["websocket_path"])
    async with connect(url, additional_headers={"Authorization": f"Bearer {admin_token}"}) as ws:
        await ws.recv()
        handed = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "result", "delivery_id": handed["delivery_id"],
                                  "status_code": 999}))
        error = json.loads(await ws.recv())
        assert "status_code" in error["detail"]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4400
    [back] = await wait_for_statuses("pending", 1, event_id=event_id)
    assert back.attempts_count == 0


async def test_deleting_the_endpoint_closes_the_socket(client, admin, admin_token, relay_server):
    listener = await _listener(client, admin)
    url = _ws(relay_server, listener["websocket_path"])
    async with connect(url, additional_headers={"Authorization": f"Bearer {admin_token}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        deleted = await client.delete(f"/api/v1/endpoints/{listener['endpoint']['id']}",
                                      headers=admin)
        assert deleted.status_code == 204
        error = json.loads(await ws.recv())
        assert error == {"type": "error", "detail": "the endpoint was deleted"}
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4404

"""`relay listen` forwards each delivery byte-exact, signed with the endpoint's secret, and
Relay records the local answer as the attempt; the dispatcher never sends it itself."""

from __future__ import annotations

from standardwebhooks import Webhook

from tests.cli.conftest import secret_of
from tests.dispatch.conftest import make_source, wait_for_statuses
from tests.servers import wait_until

BODY = b'{"type":"order.paid","note":"caf\xc3\xa9 \\u00e9","n":[1, 2 ,3]}\n'


async def test_forwarded_byte_exact_and_signed(client, admin, sink, dispatcher, start_cli):
    await make_source(client, admin, "shop")
    path = sink.path()
    sink.respond(path, 201, body=b"handled")
    listen = await start_cli("listen", "--forward-to", sink.url(path), "--source", "shop",
                             "--json")
    await listen.wait_for_stderr("Connected")

    answer = await client.post("/in/shop?x=1", content=BODY, headers={
        "content-type": "application/json", "x-shop-trace": "abc 123"})
    assert answer.status_code == 202
    event_id = answer.json()["id"]

    await wait_until(lambda: len(listen.json_lines()) == 1, timeout=15,
                     message="one delivery line")
    [received] = sink.received(path)
    assert received.body == BODY
    assert received.headers["x-shop-trace"] == "abc 123"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == event_id
    Webhook(secret_of(listen)).verify(received.body, {
        name: received.headers[name]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")})

    [line] = listen.json_lines()
    assert line["event_id"] == event_id and line["status_code"] == 201
    assert line["status"] == "succeeded" and line["duration_ms"] >= 0

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    detail = (await client.get(f"/api/v1/deliveries/{delivery.id}", headers=admin)).json()
    [attempt] = detail["attempts"]
    assert attempt["status_code"] == 201 and attempt["response_body"] == "handled"
    assert attempt["request_headers"]["webhook-signature"] == received.headers["webhook-signature"]
    assert sink.count(path) == 1


async def test_dispatcher_leaves_cli_deliveries_alone(client, admin, sink, dispatcher):
    """A cli endpoint whose URL the dispatcher could reach: it still never sends to it."""
    await make_source(client, admin, "shop")
    cli_path, hook_path = sink.path(), sink.path()
    listener = await client.post("/api/v1/cli/listen", headers=admin,
                                 json={"forward_to": sink.url(cli_path), "name": "laptop"})
    assert listener.status_code == 201, listener.text
    hook = await client.post("/api/v1/endpoints", headers=admin, json={"url": sink.url(hook_path)})
    assert hook.status_code == 201
    answer = await client.post("/in/shop", content=b"{}",
                               headers={"content-type": "application/json"})
    event_id = answer.json()["id"]

    await wait_until(lambda: sink.count(hook_path) == 1, message="the webhook endpoint's delivery")
    await wait_for_statuses("succeeded", 1, event_id=event_id,
                            endpoint_id=hook.json()["id"])
    [waiting] = await wait_for_statuses("pending", 1, event_id=event_id,
                                        endpoint_id=listener.json()["endpoint"]["id"])
    assert waiting.attempts_count == 0
    assert sink.count(cli_path) == 0

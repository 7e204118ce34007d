"""The PostgreSQL channel layer (live stream without Redis): a group message sent by one
layer reaches the group members of another (as between a dispatcher and a web worker
process), large batches are split under NOTIFY's 8,000-byte limit, nothing is lost."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from kernel.bus import LAYER_MESSAGE_TYPE, LIVE_GROUP
from kernel.pglayer import PAYLOAD_LIMIT, PostgresChannelLayer, payloads
from tests.servers import wait_until


def _item(n: int, size: int = 100) -> dict:
    return {"type": "delivery.attempted", "delivery": {"id": f"dlv_{n}", "pad": "x" * size}}


def test_a_small_message_is_one_payload():
    message = {"type": LAYER_MESSAGE_TYPE, "message": _item(1)}
    [text] = payloads(LIVE_GROUP, message)
    assert orjson.loads(text) == {"g": LIVE_GROUP, "m": message}


def test_a_large_batch_is_split_in_order_and_an_oversized_item_is_counted_dropped():
    items = [_item(n) for n in range(300)]
    items.insert(150, _item(9999, size=PAYLOAD_LIMIT))
    message = {"type": LAYER_MESSAGE_TYPE,
               "message": {"type": "batch", "items": items, "dropped": 2}}
    texts = payloads(LIVE_GROUP, message)
    assert len(texts) > 1
    assert all(len(text.encode()) <= PAYLOAD_LIMIT for text in texts)
    parts = [orjson.loads(text)["m"]["message"] for text in texts]
    received = [item for part in parts for item in part["items"]]
    assert received == [item for item in items if item["delivery"]["id"] != "dlv_9999"]
    assert sum(part.get("dropped", 0) for part in parts) == 3


def test_an_oversized_single_message_is_dropped():
    message = {"type": LAYER_MESSAGE_TYPE, "message": _item(1, size=PAYLOAD_LIMIT)}
    assert payloads(LIVE_GROUP, message) == []


async def test_a_group_message_crosses_from_one_layer_to_another(database):
    sender, receiver = PostgresChannelLayer(), PostgresChannelLayer()
    try:
        channel = await receiver.new_channel("relay.live.")
        await receiver.group_add(LIVE_GROUP, channel)
        await asyncio.wait_for(receiver.listening.wait(), 10)
        items = [_item(n) for n in range(500)]
        await sender.group_send(LIVE_GROUP, {
            "type": LAYER_MESSAGE_TYPE, "message": {"type": "batch", "items": items}})
        got: list[dict] = []
        while len(got) < len(items):
            envelope = await asyncio.wait_for(receiver.receive(channel), 10)
            assert envelope["type"] == LAYER_MESSAGE_TYPE
            got.extend(envelope["message"]["items"])
        assert got == items

        await receiver.group_discard(LIVE_GROUP, channel)
        await wait_until(lambda: not receiver.listening.is_set(), message="the LISTEN to end")
        assert not receiver.groups
    finally:
        await sender.close()
        await receiver.close()


async def _raw_listener(channel: str) -> tuple[object, asyncio.Queue]:
    """A plain LISTEN connection (not a layer's: it does not count as an audience)."""
    import asyncpg

    from kernel.database import connection_params, database_url

    connection = await asyncpg.connect(**connection_params(database_url()))
    heard: asyncio.Queue = asyncio.Queue()
    await connection.add_listener(channel, lambda *args: heard.put_nowait(args[-1]))
    return connection, heard


async def test_nothing_is_notified_while_no_layer_listens(database):
    """No dashboard open: a group message costs no NOTIFY (each would take PostgreSQL's
    notify lock and wake every listening connection). Checked on the wire: a marker sent
    after the message arrives first, and NOTIFYs arrive in commit order."""
    from kernel.pglayer import NOTIFY_CHANNEL

    sender = PostgresChannelLayer()
    connection, heard = await _raw_listener(NOTIFY_CHANNEL)
    try:
        await sender.group_send(LIVE_GROUP, {"type": LAYER_MESSAGE_TYPE, "message": _item(1)})
        await connection.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'marker'")
        assert await asyncio.wait_for(heard.get(), 10) == "marker"
        assert sender.notified == 0
    finally:
        await connection.close()
        await sender.close()


async def test_a_listener_that_joins_gets_what_is_sent_after_it_joined(database):
    """The sender's last answer was "nobody listens" (it holds for a while): a message sent
    after a dashboard joined elsewhere still reaches it, once the sender asks again."""
    sender, receiver = PostgresChannelLayer(), PostgresChannelLayer()
    try:
        await sender.group_send(LIVE_GROUP, {"type": LAYER_MESSAGE_TYPE, "message": _item(1)})
        assert sender.notified == 0
        channel = await receiver.new_channel("relay.live.")
        await receiver.group_add(LIVE_GROUP, channel)
        await asyncio.wait_for(receiver.listening.wait(), 10)
        await sender.group_send(LIVE_GROUP, {"type": LAYER_MESSAGE_TYPE, "message": _item(2)})
        envelope = await asyncio.wait_for(receiver.receive(channel), 10)
        assert envelope["message"] == _item(2)
        assert sender.notified == 1
    finally:
        await sender.close()
        await receiver.close()


async def test_a_message_json_cannot_carry_is_refused_even_while_nobody_listens(database):
    """Held messages are encoded only when someone listens; one that could never be is
    refused at once (the live bus then sends it as text), not dropped later with others."""
    from decimal import Decimal

    sender = PostgresChannelLayer()
    try:
        with pytest.raises(TypeError):
            await sender.group_send(LIVE_GROUP, {"type": LAYER_MESSAGE_TYPE,
                                                 "message": {"amount": Decimal("1.5")}})
        assert not sender._held
    finally:
        await sender.close()

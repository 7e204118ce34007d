"""Pure parts of the live stream: subscriptions, outbox frames, bus batches."""

from __future__ import annotations

import json

import pytest

from live.outbox import Outbox
from live.subscription import SubscribeError, Subscription, parse_subscribe
from relay.bus import LiveBus

EVENT = {"type": "event.received", "event": {"id": "evt_1", "source": "shop", "event_type": "a",
                                             "received_at": "t", "size": 1}}
DELIVERY = {"type": "delivery.succeeded", "delivery": {"id": "dlv_1", "event_id": "evt_1",
                                                       "endpoint_id": "ep_1"}}
OTHER_DELIVERY = {"type": "delivery.failed", "delivery": {"id": "dlv_2", "event_id": "evt_9",
                                                          "endpoint_id": "ep_2"}}
REJECTED = {"type": "ingest.rejected", "source": "bank", "reason": "bad signature"}
DISABLED = {"type": "endpoint.disabled", "endpoint": {"id": "ep_2", "disabled_reason": "410"}}
STATS = {"type": "stats", "stats": {}}
ALL = [EVENT, DELIVERY, OTHER_DELIVERY, REJECTED, DISABLED, STATS]
SOURCES = {"evt_1": "shop"}


def passing(subscription: Subscription) -> list[dict]:
    return [item for item in ALL if subscription.matches(item, SOURCES)]


def test_empty_subscription_passes_everything():
    assert Subscription().everything
    assert passing(parse_subscribe({"type": "subscribe"})) == ALL
    assert passing(parse_subscribe({"type": "subscribe", "sources": [], "types": []})) == ALL


def test_types_narrow_but_stats_always_pass():
    assert passing(parse_subscribe({"types": ["ingest.rejected"]})) == [REJECTED, STATS]


def test_sources_apply_to_events_rejections_and_deliveries_of_their_events():
    assert passing(parse_subscribe({"sources": ["shop"]})) == [EVENT, DELIVERY, DISABLED, STATS]
    assert passing(parse_subscribe({"sources": ["bank"]})) == [REJECTED, DISABLED, STATS]


def test_endpoints_apply_to_deliveries_and_disabled_endpoints():
    assert passing(parse_subscribe({"endpoints": ["ep_2"]})) == [
        EVENT, OTHER_DELIVERY, REJECTED, DISABLED, STATS]
    both = parse_subscribe({"endpoints": ["ep_1"], "types": ["delivery.succeeded"]})
    assert passing(both) == [DELIVERY, STATS]


@pytest.mark.parametrize("payload", [
    [], "x", {"types": "delivery.failed"}, {"sources": [1]}, {"endpoints": ["a"] * 201},
])
def test_malformed_subscriptions_are_refused(payload):
    with pytest.raises(SubscribeError):
        parse_subscribe(payload)


def test_outbox_sends_one_message_alone_and_several_as_a_batch():
    outbox = Outbox()
    assert outbox.take_frame() is None
    outbox.put('{"type":"a"}')
    assert outbox.take_frame() == '{"type":"a"}'
    outbox.put('{"type":"a"}')
    outbox.put('{"type":"b"}')
    assert json.loads(outbox.take_frame()) == {"type": "batch", "items": [{"type": "a"}, {"type": "b"}]}
    assert not outbox.pending


def test_outbox_sheds_the_oldest_and_says_how_many():
    outbox = Outbox(limit=3)
    for n in range(5):
        outbox.put(json.dumps({"n": n}))
    frame = json.loads(outbox.take_frame())
    assert frame == {"type": "batch", "items": [{"n": 2}, {"n": 3}, {"n": 4}], "dropped": 2}
    outbox.shed(4)
    assert json.loads(outbox.take_frame()) == {"type": "batch", "items": [], "dropped": 4}
    assert outbox.dropped_total == 6


def test_outbox_chunks_join_into_one_batch_and_are_shed_whole():
    outbox = Outbox(limit=4)
    outbox.put_chunk('{"n":0},{"n":1}', 2)
    outbox.put('{"n":2}')
    outbox.put_chunk("", 0)
    assert len(outbox) == 3
    assert json.loads(outbox.take_frame())["items"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    outbox.put_chunk('{"n":3},{"n":4},{"n":5}', 3)
    outbox.put_chunk('{"n":6},{"n":7}', 2)
    assert json.loads(outbox.take_frame()) == {
        "type": "batch", "items": [{"n": 6}, {"n": 7}], "dropped": 3}


def test_bus_batches_and_counts_what_it_shed():
    bus = LiveBus(queue_limit=3)
    assert bus.take_batch() is None
    bus.publish({"n": 0})
    assert bus.take_batch() == {"n": 0}
    for n in range(5):
        bus.publish({"n": n})
    assert bus.take_batch() == {"type": "batch", "items": [{"n": 2}, {"n": 3}, {"n": 4}],
                                "dropped": 2}
    assert bus.take_batch() is None
    assert bus.dropped_total == 2


def test_encoding_matches_the_standard_library_and_joins_batches():
    from datetime import UTC, datetime
    from decimal import Decimal

    from live.encoding import encode, encode_joined

    moment = datetime(2026, 11, 26, 5, 17, 6, 123456, tzinfo=UTC)
    messages = [EVENT, DELIVERY, STATS, {"type": "x", "at": moment, "amount": Decimal("4.20"),
                                         "ratio": 0.1, "none": None, "ok": True}]
    for message in messages[:3]:
        assert json.loads(encode(message)) == message
    assert json.loads(encode(messages[3])) == {"type": "x", "at": moment.isoformat(),
                                               "amount": "4.20", "ratio": 0.1, "none": None,
                                               "ok": True}
    assert encode(EVENT) == json.dumps(EVENT, separators=(",", ":"))
    assert encode_joined(messages) == ",".join(encode(message) for message in messages)
    assert encode_joined([]) == ""


def test_encoding_falls_back_for_what_orjson_refuses():
    from live.encoding import encode, encode_joined

    huge = {"type": "x", "n": 2**70, "keys": {1: "one"}}
    assert json.loads(encode(huge)) == {"type": "x", "n": 2**70, "keys": {"1": "one"}}
    assert json.loads("[" + encode_joined([EVENT, huge]) + "]")[1]["n"] == 2**70

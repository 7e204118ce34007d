"""Each attempt is counted in the metrics and logged once, without the endpoint's URL."""

from __future__ import annotations

import logging

from dispatch.metrics import ATTEMPTS, DELIVERIES
from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses


def _value(counter, *labels: str) -> float:
    return counter.labels(*labels)._value.get()


async def test_attempts_are_counted_and_logged(client, admin, sink, dispatcher, caplog):
    caplog.set_level(logging.INFO, logger="relay")
    caplog.set_level(logging.INFO, logger="relay.attempt")  # RELAY_ATTEMPT_LOG=all
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/secret-path-token"))
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    assert _value(ATTEMPTS, endpoint["id"], "success") == 1
    assert _value(DELIVERIES, endpoint["id"], "succeeded") == 1
    lines = [record for record in caplog.records if getattr(record, "delivery_id", None) == delivery.id]
    assert len(lines) == 1
    assert lines[0].outcome == "succeeded" and lines[0].status_code == 200
    assert "secret-path-token" not in caplog.text


async def test_by_default_only_attempts_that_did_not_succeed_are_logged(
        client, admin, sink, dispatcher, caplog):
    caplog.set_level(logging.INFO, logger="relay")
    sink.respond("/down", 500)
    await make_source(client, admin, "shop")
    good = await make_endpoint(client, admin, sink.url("/up"))
    bad = await make_endpoint(client, admin, sink.url("/down"))
    event_id = await post_event(client, "shop")

    await wait_for_statuses("succeeded", 1, event_id=event_id, endpoint_id=good["id"])
    await wait_for_statuses("retrying", 1, event_id=event_id, endpoint_id=bad["id"])
    lines = [record for record in caplog.records if record.name == "relay.attempt"]
    assert [(line.endpoint_id, line.levelname) for line in lines] == [(bad["id"], "WARNING")]

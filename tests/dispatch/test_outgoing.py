"""Headers of an outgoing delivery."""

from __future__ import annotations

import pytest

from dispatch.outgoing import outgoing_headers

RELAY = dict(
    event_id="evt_1", timestamp=1700000000, signature="v1,abc v1,def",
    event_type="invoice.paid", source_slug="stripe", attempt=2, delivery_id="dlv_1",
    version="0.1.0",
)

OWN = {
    "user-agent": "Relay/0.1.0",
    "webhook-id": "evt_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,abc v1,def",
    "x-relay-event-type": "invoice.paid",
    "x-relay-source": "stripe",
    "x-relay-attempt": "2",
    "x-relay-delivery-id": "dlv_1",
}

CASES = [
    ("nothing forwarded", {}, {}, {}),
    (
        "ordinary and provider signature headers stay",
        {"content-type": "application/json", "x-hub-signature-256": "sha256=ab",
         "stripe-signature": "t=1,v1=ff", "x-github-event": "push", "accept": "*/*"},
        {},
        {"content-type": "application/json", "x-hub-signature-256": "sha256=ab",
         "stripe-signature": "t=1,v1=ff", "x-github-event": "push", "accept": "*/*"},
    ),
    (
        "hop-by-hop and framing headers dropped",
        {"host": "relay.example", "content-length": "12", "connection": "keep-alive",
         "keep-alive": "timeout=5", "transfer-encoding": "chunked", "te": "trailers",
         "trailer": "x-foo", "upgrade": "h2c", "proxy-authorization": "Basic x",
         "proxy-connection": "keep-alive", "expect": "100-continue", "x-kept": "1"},
        {},
        {"x-kept": "1"},
    ),
    (
        "headers named by connection dropped",
        {"connection": "close, X-Secret-Hop , x-other", "x-secret-hop": "1", "x-other": "2",
         "x-kept": "3"},
        {},
        {"x-kept": "3"},
    ),
    (
        "incoming webhook-* and user-agent replaced, never twice",
        {"webhook-id": "msg_provider", "webhook-signature": "v1,provider",
         "webhook-timestamp": "1", "webhook-extra": "x", "user-agent": "Stripe/1.0",
         "x-relay-attempt": "99", "x-relay-source": "forged"},
        {},
        {},
    ),
    (
        "mixed-case names are lower-cased",
        {"Content-Type": "text/plain", "X-Custom": "a", "Host": "h", "Webhook-Id": "x"},
        {},
        {"content-type": "text/plain", "x-custom": "a"},
    ),
    (
        "endpoint headers added and win over forwarded ones",
        {"authorization": "Bearer provider", "x-a": "1"},
        {"Authorization": "Bearer mine", "X-Tenant": "t1"},
        {"authorization": "Bearer mine", "x-a": "1", "x-tenant": "t1"},
    ),
    (
        "endpoint headers cannot forge Relay's or hop-by-hop headers",
        {},
        {"webhook-signature": "v1,forged", "x-relay-attempt": "7", "host": "evil",
         "content-length": "1", "user-agent": "Mine/1", "x-ok": "y"},
        {"x-ok": "y"},
    ),
]


@pytest.mark.parametrize(("name", "event", "endpoint", "forwarded"), CASES,
                         ids=[c[0] for c in CASES])
def test_outgoing_headers(name, event, endpoint, forwarded):
    assert outgoing_headers(event, endpoint, **RELAY) == {**forwarded, **OWN}


def test_published_event_has_no_source_header_and_gets_a_content_type():
    headers = outgoing_headers({}, None, **{**RELAY, "source_slug": None, "attempt": 1},
                               content_type="application/json")
    assert "x-relay-source" not in headers
    assert headers["x-relay-attempt"] == "1"
    assert headers["content-type"] == "application/json"


def test_content_type_fallback_does_not_override_the_event():
    headers = outgoing_headers({"content-type": "text/xml"}, {}, **RELAY,
                               content_type="application/json")
    assert headers["content-type"] == "text/xml"


def test_event_without_type_has_no_type_header():
    headers = outgoing_headers({}, {}, **{**RELAY, "event_type": None})
    assert "x-relay-event-type" not in headers


def test_every_name_is_lower_case_and_every_value_a_string():
    headers = outgoing_headers({"X-A": "1"}, {"X-B": "2"}, **RELAY)
    assert all(name == name.lower() for name in headers)
    assert all(isinstance(value, str) for value in headers.values())

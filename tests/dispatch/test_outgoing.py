"""Headers of an outgoing delivery."""

from __future__ import annotations

import pytest

from dispatch.outgoing import outgoing_headers, split_sendable

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
    "accept-encoding": "identity",
    "x-relay-hops": "1",
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


@pytest.mark.parametrize(("incoming", "outgoing"), [
    ({}, "1"), ({"x-relay-hops": "3"}, "4"), ({"X-Relay-Hops": "0"}, "1"),
    ({"x-relay-hops": "junk"}, "1"), ({"x-relay-hops": "-2"}, "1"),
    ({"x-relay-hops": "\u0663"}, "1"),
])
def test_hops_count_one_more_than_the_event_arrived_with(incoming, outgoing):
    assert outgoing_headers(incoming, {}, **RELAY)["x-relay-hops"] == outgoing


def test_endpoint_and_event_headers_cannot_ask_for_compression():
    headers = outgoing_headers({"accept-encoding": "gzip"}, {"Accept-Encoding": "br"}, **RELAY)
    assert headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(("value", "sent"), [
    ("plain", "plain"),
    ("Café Zürich".encode().decode("latin-1"), "Café Zürich"),
    ("\xff\x80", None),
    ("\u20ac", None),
    ("a\r\nb: c", None),
    ("nul\x00", None),
])
def test_values_go_out_byte_exact_or_are_split_off(value, sent):
    kept, dropped = split_sendable({"x-a": value, "x-b": "ok"})
    assert kept == ({"x-a": sent, "x-b": "ok"} if sent is not None else {"x-b": "ok"})
    assert dropped == ([] if sent is not None else ["x-a"])

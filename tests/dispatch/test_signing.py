"""Outgoing Standard Webhooks signatures, checked with two independent verifiers."""

from __future__ import annotations

import base64
import time

import pytest
import standardwebhooks
import svix.webhooks

from dispatch.signing import sign, signature_header

OLD = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef012345").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-abcdef0123456789abcdef").decode()
# JSON bodies: both verifiers parse the payload after checking the signature.
BODIES = [
    b'{"type":"invoice.paid","amount":1250}',
    b"{}",
    '{"name": "caf\u00e9 \u2603"}'.encode(),
    b"[1,\n 2]\r\n",
]


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature}


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("secrets", [[OLD], [NEW, OLD]])
def test_both_libraries_accept_each_secret(body, secrets):
    timestamp = int(time.time())
    header = signature_header(secrets, "evt_01", timestamp, body)
    assert len(header.split(" ")) == len(secrets)
    assert all(part.startswith("v1,") for part in header.split(" "))
    headers = _headers("evt_01", timestamp, header)
    for secret in secrets:
        standardwebhooks.Webhook(secret).verify(body, headers)
        svix.webhooks.Webhook(secret).verify(body, headers)


def test_a_secret_not_in_the_header_is_refused():
    timestamp = int(time.time())
    body = b'{"a":1}'
    headers = _headers("evt_01", timestamp, signature_header([NEW], "evt_01", timestamp, body))
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OLD).verify(body, headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(OLD).verify(body, headers)


@pytest.mark.parametrize(
    ("field", "value"),
    [("webhook-id", "evt_02"), ("webhook-timestamp", None), ("body", b'{"a":2}')],
)
def test_changing_id_timestamp_or_body_breaks_the_signature(field, value):
    timestamp = int(time.time())
    body = b'{"a":1}'
    headers = _headers("evt_01", timestamp, signature_header([OLD], "evt_01", timestamp, body))
    if field == "body":
        body = value
    else:
        headers[field] = value or str(timestamp - 1)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OLD).verify(body, headers)


def test_equal_to_the_library_signer():
    from datetime import UTC, datetime

    timestamp = 1_700_000_000
    for body in [*BODIES, b"", b"plain text"]:
        expected = standardwebhooks.Webhook(OLD).sign(
            "msg_x", datetime.fromtimestamp(timestamp, tz=UTC), body.decode()
        )
        assert sign(OLD, "msg_x", timestamp, body) == expected


def test_non_utf8_bodies_are_signed_over_the_exact_bytes():
    import hashlib
    import hmac

    body = b"\xff\x00\xfe binary"
    key = base64.b64decode(OLD.removeprefix("whsec_"))
    digest = hmac.new(key, b"evt_9.1700000000." + body, hashlib.sha256).digest()
    assert sign(OLD, "evt_9", 1_700_000_000, body) == "v1," + base64.b64encode(digest).decode()
    assert sign(OLD, "evt_9", 1_700_000_000, body) != sign(OLD, "evt_9", 1_700_000_000, b"x")


def test_secret_without_prefix_and_bad_secret():
    raw = OLD.removeprefix("whsec_")
    assert sign(raw, "a", 1, b"b") == sign(OLD, "a", 1, b"b")
    with pytest.raises(ValueError, match="whsec_"):
        sign("whsec_!!!not base64", "a", 1, b"b")


@pytest.mark.parametrize("body", [b"", b"plain text", "caf\u00e9 \u2603".encode(), b"a\r\nb"])
def test_standardwebhooks_accepts_non_json_utf8_bodies(body):
    timestamp = int(time.time())
    headers = _headers("evt_01", timestamp, signature_header([NEW, OLD], "evt_01", timestamp, body))
    for secret in (NEW, OLD):
        assert standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False) is None

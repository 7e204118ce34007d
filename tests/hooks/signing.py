"""Signatures made the way each provider documents them, written independently of
hooks/verify.py (Standard Webhooks through the `standardwebhooks` library itself)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
"""The example in GitHub's "Validating webhook deliveries" documentation."""

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_stripe_test_0123456789abcdef"
SHOPIFY_SECRET = "shpss_0123456789abcdef"

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def github(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}"}


def stripe(secret: str, body: bytes, timestamp: int | None = None,
           extra_signatures: tuple[str, ...] = ()) -> dict[str, str]:
    """`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` (Stripe's scheme)."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
    parts = [f"t={sent_at}", *(f"v1={extra}" for extra in extra_signatures), f"v1={digest}"]
    return {"stripe-signature": ",".join(parts)}


def standard_webhooks(secret: str, body: bytes, message_id: str = "msg_1",
                      timestamp: int | None = None) -> dict[str, str]:
    """Signed by the standardwebhooks library (its `sign` takes text: bodies must be UTF-8)."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(
        message_id, datetime.fromtimestamp(sent_at, UTC), body.decode("utf-8")
    )
    return {"webhook-id": message_id, "webhook-timestamp": str(sent_at),
            "webhook-signature": signature}


def standard_webhooks_raw(secret: str, body: bytes, message_id: str = "msg_1",
                          timestamp: int | None = None) -> dict[str, str]:
    """The same scheme for any bytes: v1,base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{sent_at}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(sent_at),
            "webhook-signature": f"v1,{signature}"}


def shopify(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"x-shopify-hmac-sha256": base64.b64encode(digest).decode()}


def plain_hmac(secret: str, body: bytes, algorithm: str = "sha256", encoding: str = "hex",
               prefix: str = "") -> str:
    digest = hmac.new(secret.encode(), body, ALGORITHMS[algorithm]).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return prefix + text

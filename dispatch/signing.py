"""Standard Webhooks signatures for outgoing deliveries.

`webhook-signature` is `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per
secret, separated by spaces (two while a rotated secret is still valid). The HMAC is
computed here over the exact body bytes, because `standardwebhooks.Webhook.sign` takes a
`str` and a body need not be UTF-8; the tests check both libraries accept the result.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"


@functools.lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the library)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        raise ValueError("signing secret must be whsec_ followed by base64") from None


@functools.lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 with the secret's key set up and nothing hashed yet: copied per
    signature, so the key is not prepared again for every delivery."""
    return hmac.new(secret_key(secret), digestmod=hashlib.sha256)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    mac = _keyed(secret).copy()
    mac.update(f"{msg_id}.{int(timestamp)}.".encode())
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,` signature per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)

"""Signature schemes for incoming webhooks: one pure function per kind, all constant-time.

Each scheme takes the source's verification settings, its secret, the request's
lower-cased headers, its query parameters, the raw body and the current time, and raises
`VerificationError` with a reason a human can act on, or returns None when the request
is authentic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

KINDS = ("none", "token", "hmac", "github", "stripe", "standard_webhooks", "shopify")
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
ENCODINGS = ("hex", "base64")
DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_TOKEN_HEADER = "x-relay-token"


class VerificationError(Exception):
    """The request is not authentic; `str(error)` says why."""


@dataclass(frozen=True)
class Verification:
    kind: str = "none"
    header: str | None = None
    query_param: str | None = None
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str | None = None
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS


Headers = Mapping[str, str]
Query = Mapping[str, str]
Scheme = Callable[[Verification, str, Headers, Query, bytes, float], None]


def _same(expected: bytes | str, given: bytes | str) -> bool:
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


def _required_header(headers: Headers, name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise VerificationError(f"missing {name} header")
    return value


MAX_TIMESTAMP_DIGITS = 12


def _check_timestamp(timestamp: str, now: float, tolerance: int) -> None:
    # Plain digits only, and few of them: `int()` also takes signs, underscores and
    # non-ASCII digits, and a 300-digit number overflows the float arithmetic below.
    if not (0 < len(timestamp) <= MAX_TIMESTAMP_DIGITS and timestamp.isascii()
            and timestamp.isdigit()):
        raise VerificationError(f"timestamp {timestamp[:40]!r} is not a whole number of "
                                f"seconds (at most {MAX_TIMESTAMP_DIGITS} digits)")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance:
        direction = "old" if sent_at < now else "far in the future"
        raise VerificationError(
            f"timestamp is too {direction} ({int(now - sent_at)} s off, tolerance {tolerance} s)"
        )


def verify_none(config: Verification, secret: str, headers: Headers, query: Query,
                body: bytes, now: float) -> None:
    return None


def verify_token(config: Verification, secret: str, headers: Headers, query: Query,
                 body: bytes, now: float) -> None:
    if config.query_param:
        given = query.get(config.query_param)
        if given is None:
            raise VerificationError(f"missing {config.query_param} query parameter")
    else:
        header = config.header or DEFAULT_TOKEN_HEADER
        given = _required_header(headers, header)
        if header.lower() == "authorization" and given[:7].lower() == "bearer ":
            given = given[7:]
    if not _same(secret, given):
        raise VerificationError("token does not match")


def hmac_digest(config: Verification, secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, ALGORITHMS[config.algorithm]).digest()
    if config.encoding == "base64":
        return base64.b64encode(digest).decode()
    return digest.hex()


def verify_hmac(config: Verification, secret: str, headers: Headers, query: Query,
                body: bytes, now: float) -> None:
    header = config.header or "x-signature"
    given = _required_header(headers, header).strip()
    if config.prefix:
        if not given.startswith(config.prefix):
            raise VerificationError(f"{header} does not start with {config.prefix!r}")
        given = given[len(config.prefix):]
    expected = hmac_digest(config, secret, body)
    if config.encoding == "hex":
        given = given.lower()
    if not _same(expected, given):
        raise VerificationError(f"{header} does not match the body's {config.algorithm} HMAC")


def verify_github(config: Verification, secret: str, headers: Headers, query: Query,
                  body: bytes, now: float) -> None:
    given = _required_header(headers, "X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not _same(expected, given.strip()):
        raise VerificationError("X-Hub-Signature-256 does not match the body")


def verify_stripe(config: Verification, secret: str, headers: Headers, query: Query,
                  body: bytes, now: float) -> None:
    header = _required_header(headers, "Stripe-Signature")
    timestamp = None
    signatures = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise VerificationError("Stripe-Signature has no t= timestamp or no v1= signature")
    _check_timestamp(timestamp, now, config.tolerance_seconds)
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(_same(expected, signature) for signature in signatures):
        raise VerificationError("no v1 signature in Stripe-Signature matches the body")


def standard_webhooks_key(secret: str) -> bytes:
    """`whsec_<base64>` -> the raw HMAC key; raises ValueError when it is not that.

    Padding may be left off, as the standardwebhooks library allows.
    """
    encoded = secret.removeprefix("whsec_").rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64")
    return key


def verify_standard_webhooks(config: Verification, secret: str, headers: Headers, query: Query,
                             body: bytes, now: float) -> None:
    message_id = _required_header(headers, "webhook-id")
    timestamp = _required_header(headers, "webhook-timestamp")
    signature_header = _required_header(headers, "webhook-signature")
    _check_timestamp(timestamp, now, config.tolerance_seconds)
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    for candidate in signature_header.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and _same(expected, signature):
            return
    raise VerificationError("no v1 signature in webhook-signature matches the body")


def verify_shopify(config: Verification, secret: str, headers: Headers, query: Query,
                   body: bytes, now: float) -> None:
    given = _required_header(headers, "X-Shopify-Hmac-Sha256")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not _same(expected, given.strip()):
        raise VerificationError("X-Shopify-Hmac-Sha256 does not match the body")


SCHEMES: dict[str, Scheme] = {
    "none": verify_none,
    "token": verify_token,
    "hmac": verify_hmac,
    "github": verify_github,
    "stripe": verify_stripe,
    "standard_webhooks": verify_standard_webhooks,
    "shopify": verify_shopify,
}


def verify_request(config: Verification, secret: str, headers: Headers, query: Query,
                   body: bytes, now: float) -> None:
    """Raise VerificationError unless the request is authentic under `config.kind`."""
    SCHEMES[config.kind](config, secret, headers, query, body, now)

"""For random bodies and secrets, every scheme accepts its own signature and refuses the
same request with one byte of the body, or one character of the signature, changed."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hooks.verify import Verification, VerificationError, verify_request
from tests.hooks import signing

HEX = "0123456789abcdef"
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
NOW = int(time.time())

secrets_text = st.text(min_size=1, max_size=64)
bodies = st.binary(min_size=1, max_size=2048)


def _signed(kind: str, secret: str, raw_key: bytes, body: bytes, variant: dict):
    """(config, secret as stored, headers, the signature header, its alphabet, value start)."""
    if kind == "github":
        headers = signing.github(secret, body)
        return Verification(kind="github"), secret, headers, "x-hub-signature-256", HEX, 7
    if kind == "stripe":
        headers = signing.stripe(secret, body, timestamp=NOW)
        start = headers["stripe-signature"].index("v1=") + 3
        return Verification(kind="stripe"), secret, headers, "stripe-signature", HEX, start
    if kind == "standard_webhooks":
        stored = "whsec_" + base64.b64encode(raw_key).decode()
        headers = signing.standard_webhooks_raw(stored, body, timestamp=NOW)
        return (Verification(kind="standard_webhooks"), stored, headers, "webhook-signature",
                BASE64, 3)
    if kind == "shopify":
        return (Verification(kind="shopify"), secret, signing.shopify(secret, body),
                "x-shopify-hmac-sha256", BASE64, 0)
    algorithm, encoding, prefix = variant["algorithm"], variant["encoding"], variant["prefix"]
    config = Verification(kind="hmac", header="x-sig", algorithm=algorithm, encoding=encoding,
                          prefix=prefix or None)
    headers = {"x-sig": signing.plain_hmac(secret, body, algorithm, encoding, prefix)}
    return config, secret, headers, "x-sig", HEX if encoding == "hex" else BASE64, len(prefix)


def _change_one_character(value: str, start: int, alphabet: str, data) -> str:
    """One character of the signature replaced by another of its alphabet (never by a
    padding character or the last base64 digit, whose spare bits do not count)."""
    digits = value[start:].rstrip("=")
    end = start + len(digits) - (1 if alphabet is BASE64 else 0)
    index = data.draw(st.integers(start, end - 1), label="signature index")
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != value[index]]))
    return value[:index] + replacement + value[index + 1:]


SCHEMES = [
    pytest.param("github", {}, id="github"),
    pytest.param("stripe", {}, id="stripe"),
    pytest.param("standard_webhooks", {}, id="standard_webhooks"),
    pytest.param("shopify", {}, id="shopify"),
    *[pytest.param("hmac", {"algorithm": a, "encoding": e, "prefix": p}, id=f"hmac-{a}-{e}-{p!r}")
      for a in ("sha1", "sha256", "sha512") for e in ("hex", "base64") for p in ("", "v1=")],
]


@pytest.mark.parametrize(("kind", "variant"), SCHEMES)
@settings(max_examples=100, deadline=None)
@given(secret=secrets_text, raw_key=st.binary(min_size=1, max_size=64), body=bodies,
       data=st.data())
def test_signature_covers_every_byte(kind, variant, secret, raw_key, body, data):
    config, stored, headers, name, alphabet, start = _signed(kind, secret, raw_key, body, variant)
    verify_request(config, stored, headers, {}, body, NOW)

    index = data.draw(st.integers(0, len(body) - 1), label="body index")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed_body = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    with pytest.raises(VerificationError):
        verify_request(config, stored, headers, {}, changed_body, NOW)

    changed = _change_one_character(headers[name], start, alphabet, data)
    with pytest.raises(VerificationError):
        verify_request(config, stored, {**headers, name: changed}, {}, body, NOW)


@settings(max_examples=100, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                      max_size=64), data=st.data())
def test_token_accepts_only_the_exact_token(secret, data):
    """A token does not sign the body: any single changed character of it is refused."""
    config = Verification(kind="token")
    verify_request(config, secret, {"x-relay-token": secret}, {}, b"", NOW)
    index = data.draw(st.integers(0, len(secret) - 1))
    replacement = data.draw(st.characters(min_codepoint=33, max_codepoint=126)
                            .filter(lambda c: c != secret[index]))
    changed = secret[:index] + replacement + secret[index + 1:]
    with pytest.raises(VerificationError):
        verify_request(config, secret, {"x-relay-token": changed}, {}, b"", NOW)

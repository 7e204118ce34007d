"""Every verification kind against vectors made independently of hooks/verify.py (pure)."""

from __future__ import annotations

import time

import pytest

from hooks.verify import Verification, VerificationError, standard_webhooks_key, verify_request
from tests.hooks import signing

NOW = int(time.time())
BODY = b'{"id": "evt_1", "type": "invoice.paid", "amount": 1200}'


def case(name, config, secret, headers, body=BODY, query=None, now=NOW):
    return pytest.param(config, secret, headers, body, query or {}, now, id=name)


def _hmac(algorithm, encoding, prefix, header="x-signature"):
    config = Verification(kind="hmac", header=header, algorithm=algorithm, encoding=encoding,
                          prefix=prefix or None)
    signature = signing.plain_hmac("s3cret", BODY, algorithm, encoding, prefix)
    return case(f"hmac-{algorithm}-{encoding}-{'prefix' if prefix else 'bare'}", config,
                "s3cret", {header: signature})


STRIPE = Verification(kind="stripe")
STANDARD = Verification(kind="standard_webhooks")

ACCEPTED = [
    case("none", Verification(kind="none"), "", {}),
    case("github-documented-vector", Verification(kind="github"), signing.GITHUB_SECRET,
         {"x-hub-signature-256": signing.GITHUB_SIGNATURE}, body=signing.GITHUB_BODY),
    case("github-json", Verification(kind="github"), "gh", signing.github("gh", BODY)),
    case("stripe", STRIPE, signing.STRIPE_SECRET, signing.stripe(signing.STRIPE_SECRET, BODY)),
    case("stripe-several-v1-one-matches", STRIPE, signing.STRIPE_SECRET,
         signing.stripe(signing.STRIPE_SECRET, BODY, extra_signatures=("0" * 64, "ab" * 32))),
    case("stripe-with-v0-entry", STRIPE, signing.STRIPE_SECRET,
         {"stripe-signature": signing.stripe(signing.STRIPE_SECRET, BODY)["stripe-signature"]
          + ",v0=deadbeef"}),
    case("stripe-299s-old", STRIPE, signing.STRIPE_SECRET,
         signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW - 299)),
    case("stripe-299s-ahead", STRIPE, signing.STRIPE_SECRET,
         signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW + 299)),
    case("stripe-custom-tolerance", Verification(kind="stripe", tolerance_seconds=3600),
         signing.STRIPE_SECRET, signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW - 3000)),
    case("standard-webhooks-library", STANDARD, signing.STANDARD_SECRET,
         signing.standard_webhooks(signing.STANDARD_SECRET, BODY)),
    case("standard-webhooks-several-signatures", STANDARD, signing.STANDARD_SECRET,
         {**signing.standard_webhooks(signing.STANDARD_SECRET, BODY),
          "webhook-signature": "v1,bm90IHRoaXMgb25l v1a,ignored "
          + signing.standard_webhooks(signing.STANDARD_SECRET, BODY)["webhook-signature"]}),
    case("standard-webhooks-299s-old", STANDARD, signing.STANDARD_SECRET,
         signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW - 299)),
    case("standard-webhooks-custom-tolerance",
         Verification(kind="standard_webhooks", tolerance_seconds=900), signing.STANDARD_SECRET,
         signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW + 800)),
    case("shopify", Verification(kind="shopify"), signing.SHOPIFY_SECRET,
         signing.shopify(signing.SHOPIFY_SECRET, BODY)),
    *[_hmac(algorithm, encoding, prefix)
      for algorithm in ("sha1", "sha256", "sha512")
      for encoding in ("hex", "base64")
      for prefix in ("", f"{algorithm}=")],
    case("hmac-hex-upper-case", Verification(kind="hmac", header="x-sig"), "k",
         {"x-sig": signing.plain_hmac("k", BODY).upper()}),
    case("token-default-header", Verification(kind="token"), "tok", {"x-relay-token": "tok"}),
    case("token-custom-header", Verification(kind="token", header="x-api-key"), "tok",
         {"x-api-key": "tok"}),
    case("token-authorization-bearer", Verification(kind="token", header="authorization"), "tok",
         {"authorization": "Bearer tok"}),
    case("token-query-param", Verification(kind="token", query_param="key"), "tok", {},
         query={"key": "tok"}),
]


@pytest.mark.parametrize(("config", "secret", "headers", "body", "query", "now"), ACCEPTED)
def test_accepts(config, secret, headers, body, query, now):
    verify_request(config, secret, headers, query, body, now)


REFUSED = [
    (case("github-wrong-secret", Verification(kind="github"), "other",
          {"x-hub-signature-256": signing.GITHUB_SIGNATURE}, body=signing.GITHUB_BODY),
     "does not match"),
    (case("github-missing-header", Verification(kind="github"), "gh", {}),
     "missing X-Hub-Signature-256"),
    (case("github-sha1-header-only", Verification(kind="github"), "gh",
          {"x-hub-signature": "sha1=" + signing.plain_hmac("gh", BODY, "sha1")}),
     "missing X-Hub-Signature-256"),
    (case("stripe-tampered-body", STRIPE, signing.STRIPE_SECRET,
          signing.stripe(signing.STRIPE_SECRET, BODY + b" ")), "no v1 signature"),
    (case("stripe-301s-old", STRIPE, signing.STRIPE_SECRET,
          signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW - 301)), "too old"),
    (case("stripe-301s-ahead", STRIPE, signing.STRIPE_SECRET,
          signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW + 301)), "future"),
    (case("stripe-custom-tolerance-exceeded", Verification(kind="stripe", tolerance_seconds=10),
          signing.STRIPE_SECRET, signing.stripe(signing.STRIPE_SECRET, BODY, timestamp=NOW - 11)),
     "too old"),
    (case("stripe-no-v1", STRIPE, signing.STRIPE_SECRET, {"stripe-signature": f"t={NOW}"}),
     "no v1"),
    (case("stripe-timestamp-not-a-number", STRIPE, signing.STRIPE_SECRET,
          {"stripe-signature": "t=yesterday,v1=00"}), "not a whole number"),
    (case("stripe-missing-header", STRIPE, signing.STRIPE_SECRET, {}), "missing Stripe-Signature"),
    (case("standard-webhooks-wrong-secret", STANDARD, signing.STANDARD_SECRET,
          signing.standard_webhooks("whsec_" + "QUJDREVGR0hJSktMTU5PUA==", BODY)), "no v1"),
    (case("standard-webhooks-301s-old", STANDARD, signing.STANDARD_SECRET,
          signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW - 301)),
     "too old"),
    (case("standard-webhooks-301s-ahead", STANDARD, signing.STANDARD_SECRET,
          signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW + 301)),
     "future"),
    (case("standard-webhooks-custom-tolerance-exceeded",
          Verification(kind="standard_webhooks", tolerance_seconds=30), signing.STANDARD_SECRET,
          signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW + 31)), "future"),
    (case("standard-webhooks-id-swapped", STANDARD, signing.STANDARD_SECRET,
          {**signing.standard_webhooks(signing.STANDARD_SECRET, BODY), "webhook-id": "msg_2"}),
     "no v1"),
    (case("standard-webhooks-missing-id", STANDARD, signing.STANDARD_SECRET,
          {k: v for k, v in signing.standard_webhooks(signing.STANDARD_SECRET, BODY).items()
           if k != "webhook-id"}), "missing webhook-id"),
    (case("shopify-wrong-secret", Verification(kind="shopify"), "other",
          signing.shopify(signing.SHOPIFY_SECRET, BODY)), "does not match"),
    (case("shopify-hex-instead-of-base64", Verification(kind="shopify"), signing.SHOPIFY_SECRET,
          {"x-shopify-hmac-sha256": signing.plain_hmac(signing.SHOPIFY_SECRET, BODY)}),
     "does not match"),
    (case("hmac-wrong-algorithm", Verification(kind="hmac", header="x-sig", algorithm="sha512"),
          "k", {"x-sig": signing.plain_hmac("k", BODY, "sha256")}), "does not match"),
    (case("hmac-missing-prefix", Verification(kind="hmac", header="x-sig", prefix="sha256="), "k",
          {"x-sig": signing.plain_hmac("k", BODY)}), "does not start with"),
    (case("hmac-base64-expected-hex-given",
          Verification(kind="hmac", header="x-sig", encoding="base64"), "k",
          {"x-sig": signing.plain_hmac("k", BODY)}), "does not match"),
    (case("hmac-missing-header", Verification(kind="hmac", header="x-sig"), "k", {}),
     "missing x-sig"),
    (case("token-wrong", Verification(kind="token"), "tok", {"x-relay-token": "tok2"}),
     "does not match"),
    (case("token-missing", Verification(kind="token"), "tok", {}), "missing x-relay-token"),
    (case("token-in-header-when-query-configured", Verification(kind="token", query_param="key"),
          "tok", {"x-relay-token": "tok"}), "missing key query parameter"),
    (case("token-prefix-of-secret", Verification(kind="token"), "token", {"x-relay-token": "tok"}),
     "does not match"),
]


@pytest.mark.parametrize(("config", "secret", "headers", "body", "query", "now", "reason"),
                         [pytest.param(*param.values, reason, id=param.id)
                          for param, reason in REFUSED])
def test_refuses_with_a_reason(config, secret, headers, body, query, now, reason):
    with pytest.raises(VerificationError, match=reason):
        verify_request(config, secret, headers, query, body, now)


def test_github_documented_vector_is_what_the_helper_computes():
    assert signing.github(signing.GITHUB_SECRET, signing.GITHUB_BODY) == {
        "x-hub-signature-256": signing.GITHUB_SIGNATURE}


def test_standard_webhooks_library_accepts_the_helper_signature():
    """The raw helper (used for non-UTF-8 bodies) agrees with the library."""
    assert signing.standard_webhooks_raw(signing.STANDARD_SECRET, BODY, timestamp=NOW) == (
        signing.standard_webhooks(signing.STANDARD_SECRET, BODY, timestamp=NOW))


@pytest.mark.parametrize("secret", [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_QUJDREVGR0hJSktMTU5PUA",
])
def test_standard_webhooks_secrets_the_library_takes_are_taken(secret):
    """Unpadded base64 (accepted by the standardwebhooks library) is accepted too."""
    headers = signing.standard_webhooks(secret, BODY)
    verify_request(STANDARD, secret, headers, {}, BODY, time.time())
    assert standard_webhooks_key(secret)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_A"])
def test_standard_webhooks_key_refuses_what_is_not_base64(secret):
    with pytest.raises(ValueError, match="base64"):
        standard_webhooks_key(secret)

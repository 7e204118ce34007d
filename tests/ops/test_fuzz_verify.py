"""Each verification scheme, called directly with random headers, query parameters,
bodies, secrets and clocks: it returns (authentic) or raises VerificationError (refused),
never anything else, which would be a 500 on the ingest route."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooks.verify import (
    ALGORITHMS,
    ENCODINGS,
    KINDS,
    Verification,
    VerificationError,
    verify_request,
)
from tests.ops.fuzz import absurd_numbers, budget, header_values

SIGNATURE_HEADERS = ["x-relay-token", "authorization", "x-sig", "x-hub-signature-256",
                     "stripe-signature", "webhook-id", "webhook-timestamp", "webhook-signature",
                     "x-shopify-hmac-sha256"]
# Values shaped like the real ones (so parsing goes deep), and plain garbage.
shaped_values = st.one_of(
    header_values,
    st.builds(lambda t, sigs: ",".join([f"t={t}", *(f"v1={s}" for s in sigs)]),
              st.one_of(st.integers(-2**70, 2**70).map(str), header_values),
              st.lists(header_values, max_size=3)),
    st.lists(st.builds(lambda v, s: f"{v},{s}", st.sampled_from(["v1", "v1a", ""]),
                       header_values), max_size=3).map(" ".join),
    st.builds(lambda p, s: p + s, st.sampled_from(["sha256=", "sha1=", "Bearer ", ""]),
              header_values),
)
configs = st.builds(
    Verification,
    kind=st.sampled_from(KINDS),
    header=st.none() | st.sampled_from(SIGNATURE_HEADERS),
    query_param=st.none() | st.sampled_from(["t", "token"]),
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
    encoding=st.sampled_from(ENCODINGS),
    prefix=st.none() | st.sampled_from(["", "sha256=", "v1,"]) | st.text(max_size=5),
    tolerance_seconds=st.integers(1, 7 * 24 * 3600),
)
secrets = st.one_of(
    st.text(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=32).map(lambda key: "whsec_" + base64.b64encode(key).decode()),
)


@given(config=configs, secret=secrets,
       headers=st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), shaped_values, max_size=5),
       query=st.dictionaries(st.sampled_from(["t", "token", "x"]), st.text(max_size=30),
                             max_size=3),
       body=st.binary(max_size=500),
       now=st.floats(0, 2**34, allow_nan=False))
@budget(400)
def test_schemes_only_ever_refuse_with_verification_error(config, secret, headers, query,
                                                          body, now):
    if config.kind == "standard_webhooks" and not secret.startswith("whsec_"):
        return  # refused when the source is saved (422): never stored
    try:
        verify_request(config, secret, headers, query, body, now)
    except VerificationError as refusal:
        assert str(refusal)


@pytest.mark.parametrize("kind", ["stripe", "standard_webhooks"])
@given(timestamp=st.one_of(st.integers(-2**80, 2**80).map(str), header_values, absurd_numbers,
                           st.sampled_from(["1e9", "0x10", " 12", "١٢٣", "nan", "inf", "-0"])))
@budget(300)
def test_any_timestamp_is_judged_not_crashed_on(kind, timestamp):
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = ({"stripe-signature": f"t={timestamp},v1=00"} if kind == "stripe" else
               {"webhook-id": "m", "webhook-timestamp": timestamp, "webhook-signature": "v1,x"})
    with pytest.raises(VerificationError):
        verify_request(Verification(kind=kind), secret, headers, {}, b"{}", 1.7e9)

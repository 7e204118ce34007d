"""Budgets and strategies shared by the fuzzers.

The normal suite runs a small, fixed budget; a longer run is one variable:

    RELAY_FUZZ_EXAMPLES=5000 make test PYTEST_ARGS=tests/ops
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "0") or 0)
"""0: the normal suite's budget (each fuzzer's own default)."""


def budget(default: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=not EXAMPLES,  # the normal suite is reproducible; long runs explore
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
        database=None,
        print_blob=True,
    )


TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=30)
# Any byte an HTTP/1.1 header value may carry (obs-text included), no CR/LF/NUL.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                      blacklist_characters="\x7f"), max_size=120
                        ).map(lambda value: value.strip(" \t"))
content_types = st.one_of(
    st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x", "text/plain; charset=utf-8",
                     "application/octet-stream", "", "application/json; charset=latin-1",
                     "*/*", "application/xml"]),
    header_values,
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=4),
    max_leaves=15,
)
bodies = st.one_of(
    st.binary(max_size=3000),
    json_like.map(lambda value: __import__("json").dumps(value).encode()),
    st.sampled_from([b"", b"{", b'{"id": null, "type": 1}', b"\xff\xfe\x00", b"[]" * 500,
                     b'{"id": "a\\u0000b", "type": "\\u0000"}']),
)

absurd_numbers = st.one_of(
    st.integers(-(10 ** 400), 10 ** 400).map(str),
    st.integers(300, 5000).map(lambda digits: "9" * digits),
    st.sampled_from(["1e999999", "-1e999999", "1" + "0" * 4301, "1_000", "+7", "١٢٣",
                     "0x10", "NaN", "Infinity", "-0", "00000000000000000001", " 1 "]),
)
"""Number-shaped text a parser may choke on: hundreds of digits, exponents past any float,
digits Python's `int()` accepts but HTTP senders never write."""


def _deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


hostile_json = st.one_of(
    st.integers(1, 200_000).map(lambda depth: _deep(depth, b"[", b"]")),
    st.integers(1, 100_000).map(lambda depth: _deep(depth, b'{"a":', b"}")[:-depth]
                                + b"1" + b"}" * depth),
    st.integers(1, 400_000).map(lambda width: b"[" + b"0," * width + b"0]"),
    absurd_numbers.map(lambda number: b'{"id": "x", "type": "t", "n": ' + number.encode()
                       + b"}"),
    st.integers(1, 50_000).map(lambda depth: b'{"type": "t", "id": ' + _deep(depth, b"[", b"]")
                               + b"}"),
)
"""Bodies built to break parsers and walkers: very deep, very wide, absurd numbers."""

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

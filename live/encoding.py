"""Live messages as JSON text: encoded once per process, for every client that wants them.

orjson, not the standard library: the hub encodes three messages per event, and
`json.dumps` was a large share of the live stream's CPU in the web process (see
docs/benchmarks.md). A whole batch is encoded in one call. The
text is what `json.dumps(message, separators=(",", ":"), default=str)` gives, except
that non-ASCII characters are written as UTF-8 rather than `\\u` escapes (the same JSON)
and a datetime that slipped in is written in ISO 8601 like every time on the wire.
Anything orjson refuses (an integer over 64 bits) falls back to `json`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _standard(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def encode(message: Any) -> str:
    """One message as compact JSON text."""
    try:
        return orjson.dumps(message, default=str, option=_OPTIONS).decode()
    except TypeError:
        return _standard(message)


def encode_joined(items: list[Any]) -> str:
    """The messages' texts joined with commas (the inside of a JSON array), in one call."""
    try:
        return orjson.dumps(items, default=str, option=_OPTIONS).decode()[1:-1]
    except TypeError:
        return ",".join(encode(item) for item in items)

"""Prefixed ids that sort by creation time: `evt_` + 10 chars of milliseconds + 16 random.

Within one process, ids made in the same millisecond still sort in creation order: the
random part of the next id is the previous one plus one (as monotonic ULIDs do).
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9a-hjkmnp-tv-z]{26}$")
_RANDOM_BITS = 80

_lock = threading.Lock()
_last_millis = -1
_last_random = 0


_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
"""Every two-digit string, by value: ids are made on every hot path, two digits a step."""


def _encode(number: int, length: int) -> str:
    """`number` (below 32 ** length) as `length` base32 digits, most significant first."""
    chunks = []
    for _ in range(length // 2):
        number, pair = divmod(number, 1024)
        chunks.append(_PAIRS[pair])
    if length % 2:
        chunks.append(_ALPHABET[number % 32])
    return "".join(reversed(chunks))


def new_id(prefix: str) -> str:
    global _last_millis, _last_random
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis <= _last_millis and _last_random + 1 < (1 << _RANDOM_BITS):
            millis, random_part = _last_millis, _last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(10))
        _last_millis, _last_random = millis, random_part
    return f"{prefix}_{_encode(millis, 10)}{_encode(random_part, 16)}"


def id_boundary(prefix: str, moment: datetime | float) -> str:
    """The smallest id of type `prefix` made at `moment` (a datetime, or seconds since the
    epoch): every id made earlier sorts below it, every id made then or later not."""
    seconds = moment.timestamp() if isinstance(moment, datetime) else moment
    return f"{prefix}_{_encode(int(seconds * 1000), 10)}"


def looks_like_id(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and ID_PATTERN.match(value) is not None


def lowest_id(prefix: str, moment: float) -> str:
    """The smallest id with this prefix made at `moment` (seconds since the epoch): every id
    made at or after it sorts at or above it, so a time bound becomes an id bound."""
    return id_boundary(prefix, moment) + "0" * 16


def id_at(prefix: str, moment_millis: int) -> str:
    """A new id as if made at `moment_millis` (imports, tests of history)."""
    random_part = _encode(int.from_bytes(os.urandom(10)), 16)
    return f"{prefix}_{_encode(max(moment_millis, 0), 10)}{random_part}"

"""Loop protection between Relay instances (or one Relay and itself): every outgoing
delivery says how many Relays the event has passed (`x-relay-hops`), and ingest refuses a
request that has passed too many."""

from __future__ import annotations

from collections.abc import Mapping

HOPS_HEADER = "x-relay-hops"
MAX_HOPS = 5
"""Ingest answers 508 to a request whose `x-relay-hops` is above this."""
_MAX_DIGITS = 6


def hops_of(headers: Mapping[str, str]) -> int:
    """The `x-relay-hops` value of lower-cased `headers` (0 when absent or not a count;
    a huge count reads as a large one)."""
    value = str(headers.get(HOPS_HEADER, "")).strip()
    if not value or not value.isascii() or not value.isdigit():
        return 0
    return int(value) if len(value) <= _MAX_DIGITS else 10 ** _MAX_DIGITS

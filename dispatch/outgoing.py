"""The headers of an outgoing delivery: forwarded, the endpoint's own, then Relay's."""

from __future__ import annotations

import re
from collections.abc import Mapping

from kernel.hops import HOPS_HEADER, hops_of

DROPPED = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "trailer", "upgrade", "user-agent",
    # The stored body is sent whole: a forwarded `Expect: 100-continue` would make the
    # subscriber wait for a continuation the client never asks for.
    "expect",
})
DROPPED_PREFIXES = ("proxy-", "webhook-")
_FORWARD_DROPPED_PREFIXES = (*DROPPED_PREFIXES, "x-relay-")
"""A delivery's `x-relay-*` headers are Relay's own: none is forwarded or taken from the
endpoint's headers."""
_UNSENDABLE = re.compile("[\r\n\x00]")
"""What no header line can carry (searched once per value: every delivery's every header)."""


def wire_text(value: str) -> str | None:
    """The value as the text whose UTF-8 encoding is the bytes to send, or None when no
    request can carry it.

    Received header values are stored as their bytes read as latin-1, so the original bytes
    come back with `encode("latin-1")`. The outgoing client writes header text as UTF-8:
    bytes that are valid UTF-8 (`Café Zürich` from curl) go out exactly as received; other
    bytes, line breaks and NUL cannot, and the header is left out.
    """
    if value.isascii():
        text = value
    else:
        try:
            text = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    if _UNSENDABLE.search(text):
        return None
    return text


def split_sendable(headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the headers as the text to send, byte-exact; the names of those left out)."""
    names, values = "".join(headers), "".join(headers.values())
    if (names.isascii() and values.isascii() and not _UNSENDABLE.search(names)
            and not _UNSENDABLE.search(values)):
        return dict(headers), []  # the usual case, checked in two searches
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in headers.items():
        text = wire_text(value)
        if text is None or not name.isascii() or _UNSENDABLE.search(name):
            dropped.append(name)
        else:
            kept[name] = text
    return kept, dropped


def _kept(headers: Mapping[str, str],
          dropped_prefixes: tuple[str, ...] = DROPPED_PREFIXES) -> dict[str, str]:
    """The headers that may be forwarded, by lower-case name: not hop-by-hop (nor named
    by `Connection`), none whose name starts with one of `dropped_prefixes`."""
    kept: dict[str, str] = {}
    named_by_connection: set[str] = set()
    for name, value in headers.items():
        lower = name.strip().lower()
        if lower == "connection":
            named_by_connection.update(token.strip().lower() for token in str(value).split(","))
        if not lower or lower in DROPPED or lower.startswith(dropped_prefixes):
            continue
        kept[lower] = str(value)
    for lower in named_by_connection & kept.keys():
        del kept[lower]
    return kept


def outgoing_headers(
    event_headers: Mapping[str, str],
    endpoint_headers: Mapping[str, str] | None,
    *,
    event_id: str,
    timestamp: int,
    signature: str,
    event_type: str | None,
    source_slug: str | None,
    attempt: int,
    delivery_id: str,
    version: str,
    content_type: str | None = None,
) -> dict[str, str]:
    """Forwarded event headers, then the endpoint's extra headers, then Relay's own.

    Later layers win on a name clash, so an endpoint's headers cannot forge Relay's
    `webhook-*` / `x-relay-*` headers. `content_type` fills `content-type` only when the
    event carries none (published events).
    """
    hop_counts = [value for name, value in event_headers.items() if name.lower() == HOPS_HEADER]
    hops = hops_of({HOPS_HEADER: hop_counts[-1]} if hop_counts else {}) + 1
    headers = _kept(event_headers, _FORWARD_DROPPED_PREFIXES)
    headers.update(_kept(endpoint_headers or {}, _FORWARD_DROPPED_PREFIXES))
    if content_type and "content-type" not in headers:
        headers["content-type"] = content_type
    headers["user-agent"] = f"Relay/{version}"
    # A compressed answer could expand far past what is kept of it: ask for none.
    headers["accept-encoding"] = "identity"
    headers["webhook-id"] = event_id
    headers["webhook-timestamp"] = str(int(timestamp))
    headers["webhook-signature"] = signature
    if event_type is not None:
        headers["x-relay-event-type"] = event_type
    if source_slug is not None:
        headers["x-relay-source"] = source_slug
    headers["x-relay-attempt"] = str(int(attempt))
    headers["x-relay-delivery-id"] = delivery_id
    headers[HOPS_HEADER] = str(hops)
    return headers


def notification_headers(endpoint_headers: Mapping[str, str] | None, version: str,
                         content_type: str) -> dict[str, str]:
    """A notification's headers: the endpoint's own, the content type, Relay's user agent.
    No forwarded provider headers and no `webhook-*` signature: chat platforms need none,
    and an event's headers could carry what its provider meant for Relay alone."""
    headers = _kept(endpoint_headers or {})
    headers["content-type"] = content_type
    headers["user-agent"] = f"Relay/{version}"
    return headers

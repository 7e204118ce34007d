"""The headers of an outgoing delivery (DESIGN.md, "Outgoing request headers")."""

from __future__ import annotations

from collections.abc import Mapping

DROPPED = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "trailer", "upgrade", "user-agent",
    # The stored body is sent whole: a forwarded `Expect: 100-continue` would make the
    # subscriber wait for a continuation the client never asks for.
    "expect",
})
DROPPED_PREFIXES = ("proxy-", "webhook-")


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in str(value).split(","))
    tokens.discard("")
    return tokens


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    named_by_connection = _connection_tokens(headers)
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.strip().lower()
        if (
            not lower
            or lower in DROPPED
            or lower in named_by_connection
            or lower.startswith(DROPPED_PREFIXES)
        ):
            continue
        kept[lower] = str(value)
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
    headers = _kept(event_headers)
    headers.update(_kept(endpoint_headers or {}))
    if content_type and "content-type" not in headers:
        headers["content-type"] = content_type
    for name in [name for name in headers if name.startswith("x-relay-")]:
        del headers[name]
    headers["user-agent"] = f"Relay/{version}"
    headers["webhook-id"] = event_id
    headers["webhook-timestamp"] = str(int(timestamp))
    headers["webhook-signature"] = signature
    if event_type is not None:
        headers["x-relay-event-type"] = event_type
    if source_slug is not None:
        headers["x-relay-source"] = source_slug
    headers["x-relay-attempt"] = str(int(attempt))
    headers["x-relay-delivery-id"] = delivery_id
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

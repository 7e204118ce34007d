"""Which request headers are kept with an event (and so forwarded to subscribers)."""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
    "host", "content-length", "proxy-authenticate", "proxy-authorization", "proxy-connection",
})


def stored_headers(raw: Iterable[tuple[bytes, bytes]],
                   drop: frozenset[str] = frozenset()) -> dict[str, str]:
    """ASGI header pairs -> `{lower-case name: value}`, a repeated header joined with ", ".

    Hop-by-hop headers, the headers `Connection` names, `proxy-*` and the names in
    `drop` (a token source's secret header) are left out.
    """
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    named_by_connection = {
        item.strip().lower() for item in headers.get("connection", "").split(",") if item.strip()
    }
    return {
        name: value for name, value in headers.items()
        if name not in HOP_BY_HOP and name not in named_by_connection
        and not name.startswith("proxy-") and name not in drop
    }

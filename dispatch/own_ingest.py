"""Is an endpoint URL Relay's own ingest? An endpoint there would send every event it gets
back in as a new event: one webhook would turn into an endless stream.

The URLs known to reach this Relay are `RELAY_PUBLIC_URL` and the address the API request
came in on (its Host header and the listening socket). A name that reaches Relay in some
other way (a DNS alias, a proxy) is caught at ingest by the hop limit instead
(`relay.hops`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.http import HttpRequest

INGEST_PREFIX = "/in/"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared, not bound


def _origin(url: str) -> tuple[str, int, str] | None:
    """(host, port, path) of a URL, host lower-case without brackets; None if unparsable."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if port is None or parts.hostname is None:
        return None
    return parts.hostname.lower().rstrip("."), port, parts.path or "/"


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def own_bases(request: HttpRequest, public_url: str | None) -> list[str]:
    """Base URLs that reach this Relay, as seen from the API request."""
    bases = [f"{request.scheme}://{request.get_host()}"]
    server = request.scope.get("server") if hasattr(request, "scope") else None
    if server and server[1] is not None:
        host = str(server[0])
        shown = f"[{host}]" if ":" in host else host
        bases.append(f"{request.scheme}://{shown}:{server[1]}")
    if public_url:
        bases.append(public_url)
    return bases


def is_own_ingest(url: str, bases: Iterable[str]) -> bool:
    """True when `url` points at `<one of bases>/in/…`.

    A base whose host is a wildcard (`0.0.0.0`, `::`) or a loopback address stands for
    every loopback name on its port.
    """
    target = _origin(url)
    if target is None:
        return False
    host, port, path = target
    for base in bases:
        own = _origin(base)
        if own is None:
            continue
        own_host, own_port, own_path = own
        prefix = own_path.rstrip("/") + INGEST_PREFIX
        if port != own_port or not path.startswith(prefix):
            continue
        if host == own_host:
            return True
        if (own_host in _WILDCARDS or _is_loopback_name(own_host)) and _is_loopback_name(host):
            return True
    return False

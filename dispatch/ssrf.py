"""The SSRF guard at connect time and what a failed send means (the client that uses the
guard: `dispatch.delivery_client`).

A host name is resolved once by `GuardedResolver`, which drops every address the policy
(`dispatch.address_policy`) refuses; aiohttp then connects to exactly the addresses that
were returned, so there is no second lookup to rebind. IP-literal hosts never reach a
resolver, so the connector's socket factory checks the address of every socket it opens as
a last line of defence. A refusal raises `TargetBlocked`, which `classify_send_error` finds
in the exception chain and reports as `ssrf_blocked`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from dispatch.address_policy import (
    IPNetwork,
    describe_refusal,
    is_allowed_address,
    parse_allowlist,
)
from kernel.causes import exception_chain

ErrorKind = Literal["timeout", "connect", "dns", "tls", "ssrf_blocked", "protocol"]

Allowlist = Iterable[IPNetwork | str]


class TargetBlocked(OSError):
    """The target resolves only to addresses the SSRF policy refuses.

    An OSError, so aiohttp treats it as a failure to connect (never retried elsewhere).
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def networks_of(allowlist: Allowlist | None) -> list[IPNetwork]:
    """The allow-list as networks (strings parsed, networks kept)."""
    items = list(allowlist or ())
    strings = [item for item in items if isinstance(item, str)]
    networks = [item for item in items if not isinstance(item, str)]
    return networks + parse_allowlist(strings)


# --- URL checks (also used by the endpoints API) -----------------------------------------------

_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]*)(\.(0x[0-9a-f]*|[0-9]*))*\.?", re.IGNORECASE)


def validate_endpoint_url(url: str) -> str:
    """The URL, stripped, if it is a usable endpoint URL; else ValueError saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("url is required")
    url = url.strip()
    if len(url) > 2048:
        raise ValueError("url is longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not valid: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError(
            "url must not contain a user name or password; put credentials in the endpoint's "
            "headers (e.g. Authorization)"
        )
    host = parts.hostname
    if not host:
        raise ValueError("url has no host")
    if port == 0:
        raise ValueError("url port must be between 1 and 65535")
    if ":" not in host and _NUMERIC_HOST.fullmatch(host):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            raise ValueError(
                f"url host {host!r} is not a canonical IPv4 address (use dotted a.b.c.d)"
            ) from None
    return url


def url_ip_literal(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when the URL's host is an IP literal, else None."""
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        return ipaddress.ip_address(host.split("%", 1)[0].rstrip("."))
    except ValueError:
        return None


def check_url_target(url: str, allowlist: Allowlist | None) -> None:
    """Raise TargetBlocked when the URL's host is an IP literal the policy refuses.

    Host names are checked when they are resolved, at every attempt.
    """
    address = url_ip_literal(url)
    if address is not None and not is_allowed_address(address, networks_of(allowlist)):
        raise TargetBlocked(describe_refusal(address))


# --- connect-time guard ------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses the policy allows.

    `inner` is the resolver that does the lookup (aiohttp's default when None).
    """

    def __init__(self, allowlist: Allowlist | None, inner: AbstractResolver | None = None):
        self._allowlist = networks_of(allowlist)
        self._inner = inner
        self._owns_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        resolved = await self._inner.resolve(host, port, family)
        allowed = [r for r in resolved if is_allowed_address(r["host"], self._allowlist)]
        if allowed:
            return allowed
        refused = dict.fromkeys(describe_refusal(r["host"]) for r in resolved)
        if not refused:
            raise TargetBlocked(f"{host} resolves to no address")
        raise TargetBlocked(f"{host} resolves only to refused addresses: " + "; ".join(refused))

    async def close(self) -> None:
        if self._owns_inner and self._inner is not None:
            await self._inner.close()


def guarded_socket_factory(allowlist: Allowlist | None) -> Callable[[Any], socket.socket]:
    """Socket factory for aiohttp's connector that refuses to open a socket to a refused
    address: this catches IP-literal hosts, which aiohttp never passes to the resolver."""
    networks = networks_of(allowlist)

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        if not is_allowed_address(address[0], networks):
            raise TargetBlocked(describe_refusal(address[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


# --- what went wrong ---------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception chain, with the OS error aiohttp keeps beside it (`os_error`)."""
    seen = exception_chain(exc)
    for item in list(seen):
        os_error = getattr(item, "os_error", None)
        if isinstance(os_error, BaseException) and all(os_error is not s for s in seen):
            seen.extend(_chain(os_error))
    return seen


def _aiohttp_kind(error: aiohttp.ClientError) -> ErrorKind:
    if isinstance(error, aiohttp.ClientSSLError):
        return "tls"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(error, aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "protocol"
    if isinstance(error, aiohttp.ClientOSError):
        return "connect"
    return "protocol"


def classify_send_error(exc: BaseException) -> ErrorKind:
    """The design's error kind for an exception raised while sending.

    The aiohttp error that caused an httpx one (`dispatch.delivery_client.as_httpx_error`)
    decides when there is one: it says more (TLS, DNS, a closed connection) than the httpx
    class it was mapped to.
    """
    chain = _chain(exc)
    if any(isinstance(item, TargetBlocked) for item in chain):
        return "ssrf_blocked"
    if any(isinstance(item, ssl.SSLError | ssl.CertificateError) for item in chain):
        return "tls"
    if any(isinstance(item, socket.gaierror) for item in chain):
        return "dns"
    for item in chain:
        if isinstance(item, aiohttp.ClientError):
            return _aiohttp_kind(item)
    for item in chain:
        if isinstance(item, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
            return "timeout"
        if isinstance(item, httpx.ConnectError):
            return "connect"
        if isinstance(item, httpx.HTTPError):
            return "protocol"
    if any(isinstance(item, OSError) for item in chain):
        return "connect"
    return "protocol"


def describe_send_error(exc: BaseException) -> str:
    """A one-line message for the attempt record (the SSRF refusal text when there is one)."""
    for item in _chain(exc):
        if isinstance(item, TargetBlocked):
            return item.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

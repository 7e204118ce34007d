"""Which IP addresses Relay may send webhooks to (the SSRF policy), as pure functions.

Every address that is not globally routable is refused unless it is on the allow-list
(`RELAY_TARGET_ALLOWLIST`). IPv6 forms that carry an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4) are judged by the IPv4 address they carry, so
`::ffff:127.0.0.1` or `64:ff9b::a9fe:a9fe` cannot reach what `127.0.0.1` or
`169.254.169.254` cannot. No sockets here: `dispatch.ssrf` applies this at connect time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network

_IPV4_REFUSED: list[tuple[ipaddress.IPv4Network, str]] = [
    (ipaddress.IPv4Network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.IPv4Network("0.0.0.0/8"), 'in 0.0.0.0/8 ("this network")'),
    (ipaddress.IPv4Network("10.0.0.0/8"), "private (RFC 1918)"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "in the carrier-grade NAT range 100.64.0.0/10"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local (cloud metadata lives here)"),
    (ipaddress.IPv4Network("172.16.0.0/12"), "private (RFC 1918)"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "in the IETF protocol assignments range 192.0.0.0/24"),
    (ipaddress.IPv4Network("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (ipaddress.IPv4Network("192.88.99.0/24"), "the deprecated 6to4 relay anycast range"),
    (ipaddress.IPv4Network("192.168.0.0/16"), "private (RFC 1918)"),
    (ipaddress.IPv4Network("198.18.0.0/15"), "in the benchmarking range 198.18.0.0/15"),
    (ipaddress.IPv4Network("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (ipaddress.IPv4Network("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
]

_IPV6_REFUSED: list[tuple[ipaddress.IPv6Network, str]] = [
    (ipaddress.IPv6Network("::1/128"), "loopback"),
    (ipaddress.IPv6Network("::/128"), "the unspecified address"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "in the local-use NAT64 prefix 64:ff9b:1::/48"),
    (ipaddress.IPv6Network("100::/64"), "in the discard-only prefix 100::/64"),
    (ipaddress.IPv6Network("2001::/23"), "in the IETF protocol assignments range 2001::/23"),
    (ipaddress.IPv6Network("2001:db8::/32"), "documentation (2001:db8::/32)"),
    (ipaddress.IPv6Network("3fff::/20"), "documentation (3fff::/20)"),
    (ipaddress.IPv6Network("5f00::/16"), "an SRv6 segment identifier (5f00::/16)"),
    (ipaddress.IPv6Network("fc00::/7"), "a unique local address (fc00::/7)"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local (deprecated)"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast"),
]

_IPV4_COMPATIBLE = _net("::/96")
_NAT64 = _net("64:ff9b::/96")
_SIX_TO_FOUR = _net("2002::/16")


def parse_allowlist(items: Iterable[str]) -> list[IPNetwork]:
    """`["127.0.0.1", "10.1.0.0/16"]` -> networks; raises ValueError naming the bad item."""
    networks: list[IPNetwork] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"RELAY_TARGET_ALLOWLIST: {text!r} is not an IP address or CIDR "
                "(e.g. 127.0.0.1 or 10.1.0.0/16)"
            ) from None
    return networks


def to_address(ip: str | IPAddress) -> IPAddress:
    """An address object from a string (an IPv6 zone such as `%eth0` is ignored)."""
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = ip
    else:
        address = ipaddress.ip_address(str(ip).strip().strip("[]").split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))
    return address


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the name of the form, if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def refusal_reason(ip: str | IPAddress) -> str | None:
    """Why the address is not globally routable (e.g. "loopback"), or None if it is."""
    address = to_address(ip)
    carried = embedded_ipv4(address)
    if carried is not None:
        inner, form = carried
        reason = refusal_reason(inner)
        return None if reason is None else f"the {form} form of {inner}, which is {reason}"
    table = _IPV4_REFUSED if isinstance(address, ipaddress.IPv4Address) else _IPV6_REFUSED
    for network, reason in table:
        if address in network:
            return reason
    if not address.is_global or address.is_private:
        return "in a special-purpose range"
    return None


def _allow_listed(address: IPAddress, allowlist: Iterable[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate.version == network.version and candidate in network
        for network in allowlist
        for candidate in candidates
    )


def is_allowed_address(ip: str | IPAddress, allowlist: Iterable[IPNetwork] = ()) -> bool:
    """True when Relay may connect to `ip`: globally routable, or allow-listed.

    Anything that does not parse as an address is refused.
    """
    try:
        address = to_address(ip)
    except ValueError:
        return False
    return _allow_listed(address, allowlist) or refusal_reason(address) is None


def describe_refusal(ip: str | IPAddress) -> str:
    """A sentence for the attempt record and the API's 422."""
    try:
        address = to_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    reason = refusal_reason(address)
    if reason is None:
        return f"{address} is globally routable"
    return (
        f"{address} is {reason}, not globally routable; "
        "add it to RELAY_TARGET_ALLOWLIST to allow it"
    )

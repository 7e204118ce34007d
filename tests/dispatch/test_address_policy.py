"""The SSRF address policy (pure classifier, no sockets).

This is the one test file allowed to hold private-range and public address literals: they
are only classified here, never connected to.
"""

from __future__ import annotations

import ipaddress

import pytest

from dispatch.address_policy import (
    describe_refusal,
    embedded_ipv4,
    is_allowed_address,
    parse_allowlist,
    refusal_reason,
)

REFUSED = [
    # IPv4
    ("0.0.0.0", "this network"),
    ("0.1.2.3", "this network"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.0.0.2", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.9", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("254.1.2.3", "reserved"),
    ("255.255.255.255", "broadcast"),
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("2001:db8::1", "documentation"),
    ("2001:db8:ffff::1", "documentation"),
    ("3fff::1", "documentation"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("100::1", "discard-only"),
    ("2001::1", "IETF protocol assignments"),  # Teredo
    ("2001:10::1", "IETF protocol assignments"),
    ("5f00::1", "SRv6"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("64:ff9b:1:ffff::808:808", "local-use NAT64"),
    # IPv4-mapped forms
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, which is loopback"),
    ("::ffff:7f00:2", "IPv4-mapped form of 127.0.0.2"),
    ("::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3, which is private"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254"),
    ("::ffff:0.0.0.0", "IPv4-mapped form of 0.0.0.0"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    # IPv4-compatible forms
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
    ("::192.168.1.1", "IPv4-compatible form of 192.168.1.1"),
    ("::0.0.0.2", "IPv4-compatible form of 0.0.0.2"),
    # NAT64 forms
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1, which is loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254"),
    ("64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1"),
    ("64:ff9b::224.0.0.1", "NAT64 form of 224.0.0.1, which is multicast"),
    # 6to4 forms
    ("2002:7f00:1::", "6to4 form of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254"),
    ("2002:c0a8:101::5", "6to4 form of 192.168.1.1"),
    ("2002:0a00:0001:1::1", "6to4 form of 10.0.0.1"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",
    ipaddress.ip_address("1.1.1.1"),
    ipaddress.ip_address("2606:4700:4700::1111"),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_without_allowlist(address, reason):
    assert is_allowed_address(address, []) is False
    assert reason in refusal_reason(address)
    message = describe_refusal(address)
    assert reason in message
    assert message.endswith("not globally routable; add it to RELAY_TARGET_ALLOWLIST to allow it")


@pytest.mark.parametrize("address", ALLOWED, ids=[str(a) for a in ALLOWED])
def test_globally_routable_addresses_are_allowed(address):
    assert is_allowed_address(address, []) is True
    assert refusal_reason(address) is None


def test_describe_refusal_text():
    assert describe_refusal("127.0.0.2") == (
        "127.0.0.2 is loopback, not globally routable; "
        "add it to RELAY_TARGET_ALLOWLIST to allow it"
    )
    assert describe_refusal("::ffff:127.0.0.2") == (
        "::ffff:7f00:2 is the IPv4-mapped form of 127.0.0.2, which is loopback, "
        "not globally routable; add it to RELAY_TARGET_ALLOWLIST to allow it"
    )
    assert describe_refusal("8.8.8.8") == "8.8.8.8 is globally routable"
    assert describe_refusal("nope") == "'nope' is not an IP address"


ALLOWLIST = parse_allowlist(["127.0.0.1", "10.1.0.0/16", " fd00::/8 ", "::1"])

WITH_ALLOWLIST = [
    ("127.0.0.1", True),
    ("127.0.0.2", False),
    ("::ffff:127.0.0.1", True),  # the mapped form is the same socket address
    ("::ffff:127.0.0.2", False),
    ("64:ff9b::127.0.0.1", False),  # NAT64 goes through a gateway: not the same address
    ("2002:7f00:1::", False),
    ("::127.0.0.1", False),
    ("10.1.2.3", True),
    ("10.2.0.1", False),
    ("::ffff:10.1.9.9", True),
    ("fd00::5", True),
    ("fc00::5", False),
    ("::1", True),
    ("169.254.169.254", False),
    ("8.8.8.8", True),
    ("not-an-ip", False),
    ("", False),
]


@pytest.mark.parametrize(("address", "expected"), WITH_ALLOWLIST)
def test_allowlist_exceptions(address, expected):
    assert is_allowed_address(address, ALLOWLIST) is expected


def test_parse_allowlist():
    assert parse_allowlist([]) == []
    assert parse_allowlist(["", "  "]) == []
    assert parse_allowlist(["127.0.0.1"]) == [ipaddress.ip_network("127.0.0.1/32")]
    assert parse_allowlist(["10.1.2.3/16"]) == [ipaddress.ip_network("10.1.0.0/16")]
    assert parse_allowlist(["::1"]) == [ipaddress.ip_network("::1/128")]
    for bad in ["localhost", "10.0.0.0/33", "1.2.3", "127.0.0.1,10.0.0.1"]:
        with pytest.raises(ValueError, match=f"RELAY_TARGET_ALLOWLIST: {bad!r} is not"):
            parse_allowlist(["127.0.0.1", bad])


def test_embedded_ipv4_forms():
    cases = {
        "::ffff:1.2.3.4": ("1.2.3.4", "IPv4-mapped"),
        "64:ff9b::1.2.3.4": ("1.2.3.4", "NAT64"),
        "2002:102:304::": ("1.2.3.4", "6to4"),
        "::1.2.3.4": ("1.2.3.4", "IPv4-compatible"),
    }
    for address, (inner, form) in cases.items():
        assert embedded_ipv4(ipaddress.ip_address(address)) == (
            ipaddress.IPv4Address(inner), form
        )
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("1.2.3.4")) is None


def test_every_address_in_each_refused_ipv4_range_is_refused_in_every_form():
    for network in ["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]:
        net = ipaddress.ip_network(network)
        for inner in (net.network_address, net.network_address + 1, net.broadcast_address):
            value = int(inner)
            for form in (
                ipaddress.IPv6Address((0xFFFF << 32) | value),
                ipaddress.IPv6Address((0x64FF9B << 96) | value),
                ipaddress.IPv6Address((0x2002 << 112) | (value << 80)),
            ):
                assert not is_allowed_address(form, []), form

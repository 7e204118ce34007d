"""The SSRF guard and the shared outgoing client, against real servers on loopback.

RELAY_TARGET_ALLOWLIST is 127.0.0.1 here, so 127.0.0.2 stands for a refused address: a
server listens there and must never see a connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest
from aiohttp.abc import AbstractResolver

from dispatch.delivery_client import build_http_client
from dispatch.ssrf import (
    GuardedResolver,
    TargetBlocked,
    check_url_target,
    classify_send_error,
    describe_send_error,
    validate_endpoint_url,
)
from tests.servers import free_port

ALLOW = ["127.0.0.1"]


class TinyServer:
    """A raw HTTP/1.1 server that counts connections and requests.

    `behaviour`: ok (200 "ok", keep-alive), silent (never answers), garbage (not HTTP),
    close (hangs up after the request), redirect (302 to `location`).
    """

    def __init__(self, behaviour: str = "ok", location: str = "") -> None:
        self.behaviour = behaviour
        self.location = location
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int = 0) -> TinyServer:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.connections += 1
        self._writers.append(writer)
        try:
            if self.behaviour == "garbage":
                writer.write(b"HELLO THERE\r\n\r\n")
                await writer.drain()
                await reader.read()
                return
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests += 1
                if self.behaviour == "silent":
                    await reader.read()
                    return
                if self.behaviour == "close":
                    return
                if self.behaviour == "redirect":
                    writer.write(b"HTTP/1.1 302 Found\r\nLocation: " + self.location.encode()
                                 + b"\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class StaticResolver(AbstractResolver):
    """Answers every name with fixed addresses (the `n`-th lookup gets `answers[n]`)."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups.append(host)
        answer = self.answers[min(len(self.lookups), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return [
            {"hostname": host, "host": address, "port": port,
             "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
             "proto": 0, "flags": socket.AI_NUMERICHOST}
            for address in answer
        ]

    async def close(self):
        pass


@pytest.fixture
async def allowed():
    server = await TinyServer().start("127.0.0.1")
    yield server
    await server.stop()


@pytest.fixture
async def refused(allowed):
    """A server on 127.0.0.2, on the same port as `allowed` when that port is free there."""
    try:
        server = await TinyServer().start("127.0.0.2", allowed.port)
    except OSError:
        server = await TinyServer().start("127.0.0.2")
    yield server
    await server.stop()


async def _error(client: httpx.AsyncClient, url: str) -> BaseException:
    with pytest.raises(Exception) as raised:  # the kind is what is checked
        await client.post(url, content=b'{"a":1}')
    return raised.value


async def test_allowed_ip_literal_and_localhost_succeed(allowed):
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
        first = await client.post(f"http://127.0.0.1:{allowed.port}/hook", content=b"{}")
        second = await client.post(f"http://localhost:{allowed.port}/hook", content=b"{}")
    assert (first.status_code, first.text) == (200, "ok")
    assert (second.status_code, second.text) == (200, "ok")
    assert allowed.requests == 2


async def test_keep_alive_reuses_the_connection(allowed):
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
        for _ in range(5):
            response = await client.post(f"http://127.0.0.1:{allowed.port}/", content=b"x")
            assert response.status_code == 200
    assert (allowed.requests, allowed.connections) == (5, 1)


async def test_refused_ip_literal_never_connects(refused):
    url = f"http://127.0.0.2:{refused.port}/hook"
    with pytest.raises(TargetBlocked, match="127.0.0.2 is loopback"):
        check_url_target(url, ALLOW)
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
        error = await _error(client, url)
    assert classify_send_error(error) == "ssrf_blocked"
    assert "127.0.0.2 is loopback" in describe_send_error(error)
    assert refused.connections == 0


async def test_refused_ipv6_loopback_literal():
    with pytest.raises(TargetBlocked, match="::1 is loopback"):
        check_url_target("http://[::1]:9/", ALLOW)
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
        error = await _error(client, "http://[::1]:9/")
    assert classify_send_error(error) == "ssrf_blocked"


async def test_allowed_ip_literal_and_host_names_pass_check_url_target():
    check_url_target("http://127.0.0.1:9/", ALLOW)
    check_url_target("http://localhost:9/", ALLOW)  # names are checked when resolved
    check_url_target("https://hooks.example.com/x", [])
    check_url_target("http://[::1]:9/", ["::1"])


async def test_host_name_resolving_to_a_refused_address_never_connects(refused):
    resolver = StaticResolver(["127.0.0.2"])
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW,
                                 inner_resolver=resolver) as client:
        error = await _error(client, f"http://internal.test:{refused.port}/")
    assert classify_send_error(error) == "ssrf_blocked"
    assert describe_send_error(error) == (
        "internal.test resolves only to refused addresses: 127.0.0.2 is loopback, not "
        "globally routable; add it to RELAY_TARGET_ALLOWLIST to allow it"
    )
    assert refused.connections == 0
    assert resolver.lookups == ["internal.test"]


async def test_refused_addresses_are_dropped_and_the_checked_one_is_used(allowed, refused):
    if refused.port != allowed.port:
        pytest.skip("could not bind 127.0.0.2 on the same port")
    resolver = StaticResolver(["127.0.0.2", "::1", "127.0.0.1"])
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW,
                                 inner_resolver=resolver) as client:
        response = await client.post(f"http://mixed.test:{allowed.port}/", content=b"x")
    assert response.status_code == 200
    assert (allowed.connections, refused.connections) == (1, 0)


async def test_one_lookup_per_connection_no_rebinding(allowed, refused):
    """The connection goes to the address that was checked: a second answer (rebinding to
    a refused address) is never asked for."""
    resolver = StaticResolver(["127.0.0.1"], ["127.0.0.2"])
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW,
                                 inner_resolver=resolver) as client:
        response = await client.post(f"http://rebind.test:{allowed.port}/", content=b"x")
    assert response.status_code == 200
    assert resolver.lookups == ["rebind.test"]
    assert (allowed.connections, refused.connections) == (1, 0)


async def test_guarded_resolver_alone():
    guarded = GuardedResolver(ALLOW, StaticResolver(["127.0.0.2", "127.0.0.1"]))
    result = await guarded.resolve("x.test", 80)
    assert [r["host"] for r in result] == ["127.0.0.1"]
    with pytest.raises(TargetBlocked, match="x.test resolves to no address"):
        await GuardedResolver(ALLOW, StaticResolver([])).resolve("x.test", 80)
    assert isinstance(TargetBlocked("m"), OSError)


async def test_timeout_is_classified():
    silent = await TinyServer("silent").start("127.0.0.1")
    try:
        async with build_http_client(max_connections=10, timeout=0.3, allowlist=ALLOW) as client:
            error = await _error(client, f"http://127.0.0.1:{silent.port}/")
        assert classify_send_error(error) == "timeout"
        assert silent.requests == 1
    finally:
        await silent.stop()


async def test_connection_refused_is_classified():
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
        error = await _error(client, f"http://127.0.0.1:{free_port()}/")
    assert classify_send_error(error) == "connect"


async def test_dns_failure_is_classified():
    resolver = StaticResolver(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW,
                                 inner_resolver=resolver) as client:
        error = await _error(client, "http://nowhere.test/")
    assert classify_send_error(error) == "dns"


@pytest.mark.parametrize(("behaviour", "scheme", "kind"), [
    ("garbage", "https", "tls"),
    ("garbage", "http", "protocol"),
    ("close", "http", "protocol"),
])
async def test_tls_and_protocol_errors_are_classified(behaviour, scheme, kind):
    server = await TinyServer(behaviour).start("127.0.0.1")
    try:
        async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
            error = await _error(client, f"{scheme}://127.0.0.1:{server.port}/")
        assert classify_send_error(error) == kind
    finally:
        await server.stop()


async def test_redirects_are_not_followed(allowed):
    redirect = await TinyServer("redirect", f"http://127.0.0.1:{allowed.port}/").start(
        "127.0.0.1")
    try:
        async with build_http_client(max_connections=10, timeout=5, allowlist=ALLOW) as client:
            response = await client.post(f"http://127.0.0.1:{redirect.port}/", content=b"x")
        assert response.status_code == 302
        assert allowed.connections == 0
    finally:
        await redirect.stop()


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), "timeout"),
    (httpx.ReadTimeout("slow"), "timeout"),
    (httpx.PoolTimeout("pool"), "timeout"),
    (httpx.ConnectError("refused"), "connect"),
    (httpx.RemoteProtocolError("bad"), "protocol"),
    (httpx.ReadError("reset"), "protocol"),
    (ssl.SSLCertVerificationError("bad cert"), "tls"),
    (ConnectionResetError(), "connect"),
    (ValueError("what"), "protocol"),
    (TargetBlocked("no"), "ssrf_blocked"),
])
def test_classify_plain_exceptions(exc, kind):
    assert classify_send_error(exc) == kind


def test_classify_follows_the_cause_chain():
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        except socket.gaierror as inner:
            raise httpx.ConnectError("lookup failed") from inner
    except httpx.ConnectError as outer:
        assert classify_send_error(outer) == "dns"
    try:
        try:
            raise TargetBlocked("127.0.0.2 is loopback")
        except TargetBlocked as inner:
            raise httpx.ConnectTimeout("mapped loosely") from inner
    except httpx.ConnectTimeout as outer:
        assert classify_send_error(outer) == "ssrf_blocked"
        assert describe_send_error(outer) == "127.0.0.2 is loopback"


# --- endpoint URLs ---------------------------------------------------------------------------

VALID_URLS = [
    "https://hooks.example.com/relay",
    "http://localhost:8080/x?y=1",
    "HTTPS://Hooks.Example.com",
    "http://127.0.0.1:9000/",
    "http://[::1]:9000/",
    "  https://hooks.example.com/trimmed  ",
]

INVALID_URLS = [
    ("", "url is required"),
    ("ftp://hooks.example.com/", "must start with http:// or https://"),
    ("hooks.example.com/x", "must start with http:// or https://"),
    ("javascript:alert(1)", "must start with http:// or https://"),
    ("http:///path", "has no host"),
    ("https://user:pw@hooks.example.com/", "must not contain a user name or password"),
    ("https://user@hooks.example.com/", "must not contain a user name or password"),
    ("http://hooks.example.com:99999/", "url is not valid"),
    ("http://hooks.example.com:0/", "port must be between 1 and 65535"),
    ("http://hooks.example.com/a b", "spaces or control characters"),
    ("http://hooks.example.com/a\nb", "spaces or control characters"),
    ("http://2130706433/", "not a canonical IPv4 address"),
    ("http://127.1/", "not a canonical IPv4 address"),
    ("http://0x7f.0.0.1/", "not a canonical IPv4 address"),
    ("http://0177.0.0.1/", "not a canonical IPv4 address"),
    ("https://example.com/" + "a" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize("url", VALID_URLS)
def test_valid_endpoint_urls(url):
    assert validate_endpoint_url(url) == url.strip()


@pytest.mark.parametrize(("url", "message"), INVALID_URLS, ids=[u[1] for u in INVALID_URLS])
def test_invalid_endpoint_urls(url, message):
    with pytest.raises(ValueError, match=message):
        validate_endpoint_url(url)

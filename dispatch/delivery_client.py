"""The process's one outgoing HTTP client: the httpx API over an aiohttp connection pool.

`DeliveryClient` is an `httpx.AsyncClient`; `DeliveryTransport` is the httpx transport
that hands each `httpx.Request` to an aiohttp session and gives back an `httpx.Response`
whose body streams from aiohttp. Both use only the public API of httpx (`Request`,
`Response`, `AsyncBaseTransport`, `AsyncByteStream`) and of aiohttp (`ClientSession`,
`ClientTimeout`, `ClientResponse.content` / `release`); tests/dispatch/test_delivery_client.py
checks the bytes that reach a raw server, so an upgrade of either library that changes
what is sent fails there.

The transport is written here rather than taken from httpx-aiohttp because a delivery is
mostly this hop: that transport converted the headers through `httpx.Headers` twice, parsed
the URL again on every request, wrapped every call in exception-mapping context managers,
armed a read timer per answer chunk beside the sender's own deadline, and mapped a server
that hangs up to `ConnectTimeout`. Here the deadline is one aiohttp timer
(`TOTAL_TIMEOUT`), and aiohttp's errors become httpx's in one function (`as_httpx_error`),
each keeping the aiohttp error as its cause for `dispatch.ssrf.classify_send_error`.
"""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict

from dispatch.ssrf import Allowlist, GuardedResolver, guarded_socket_factory, networks_of

DNS_CACHE_SECONDS = 5
"""Resolved (and already filtered) addresses are reused this long, then checked again."""

KEEPALIVE_SECONDS = 30.0

TOTAL_TIMEOUT = "total_timeout"
"""Request extension understood by `DeliveryTransport`: seconds from the start of the
request until the answer has been read (httpx's own timeouts bound each step only). A
request without it has no total deadline, as with any httpx transport."""


class DeadlineExceeded(httpx.TimeoutException):
    """The request's `total_timeout` ran out before its answer was read."""


def as_httpx_error(exc: BaseException, request: httpx.Request) -> httpx.HTTPError | None:
    """The httpx error for an aiohttp failure (None: not one this transport maps).

    The most specific aiohttp classes come first: a refused connection is a
    `ClientConnectorError`, which is also a `ClientOSError`, and a read timeout is a
    `ServerTimeoutError`, which is also a plain `TimeoutError`.
    """
    message = str(exc) or type(exc).__name__
    error: httpx.HTTPError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout(message, request=request)
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        error = httpx.ReadTimeout(message, request=request)
    elif isinstance(exc, TimeoutError):
        error = DeadlineExceeded("no complete answer within the request's total timeout",
                                 request=request)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError(message, request=request)
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        error = httpx.ReadError(message, request=request)
    elif isinstance(exc, aiohttp.InvalidURL):
        error = httpx.UnsupportedProtocol(message, request=request)
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = httpx.RemoteProtocolError(message, request=request)
    elif isinstance(exc, aiohttp.ClientOSError):
        error = httpx.ConnectError(message, request=request)
    elif isinstance(exc, aiohttp.ClientError):
        error = httpx.TransportError(message, request=request)
    else:
        return None
    return error


@functools.lru_cache(maxsize=4096)
def _aiohttp_url(url: str) -> yarl.URL:
    return yarl.URL(url)


@functools.lru_cache(maxsize=256)
def _client_timeout(connect: float | None, read: float | None, pool: float | None,
                    total: float | None) -> aiohttp.ClientTimeout:
    """httpx's step timeouts as aiohttp's (`connect` → `sock_connect`, `read` →
    `sock_read`, `pool` → `connect`: waiting for a pooled connection plus DNS plus
    connecting), with `total` on top. A step timeout no shorter than the total could
    never end a request first, so it is left out: each one is a timer aiohttp arms.
    Deadlines are kept to the moment: by default aiohttp rounds one of more than 5 s up to
    the loop's next whole second, and a 10 s timeout could end an attempt after 10.9 s."""
    def step(seconds: float | None) -> float | None:
        return None if seconds is None or (total is not None and seconds >= total) else seconds

    return aiohttp.ClientTimeout(total=total, sock_connect=step(connect),
                                 sock_read=step(read), connect=step(pool),
                                 ceil_threshold=math.inf)


def _header_text(request: httpx.Request) -> CIMultiDict[str]:
    """The request's headers in order, as the text aiohttp writes back as UTF-8."""
    try:
        return CIMultiDict([(name.decode("ascii"), value.decode("utf-8"))
                            for name, value in request.headers.raw])
    except UnicodeDecodeError:
        raise httpx.LocalProtocolError(
            "a header name is not ASCII or a header value is not UTF-8 text",
            request=request) from None


class _AnswerStream(httpx.AsyncByteStream):
    """The answer's body as aiohttp reads it; closing releases the connection (kept
    alive only when the body was read to its end)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception as exc:
            error = as_httpx_error(exc, self._request)
            if error is None:
                raise
            raise error from exc

    async def aclose(self) -> None:
        self._response.release()


class DeliveryTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an aiohttp `ClientSession` made by `session_factory` on
    first use (inside the running loop). HTTP/1.1 only; request bodies are read whole
    (a delivery's body is in memory already); redirects are not followed and answers are
    not decompressed (the caller decides: `dispatch.posting`)."""

    def __init__(self, session_factory: Callable[[], aiohttp.ClientSession]) -> None:
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._session_factory()
        steps = request.extensions.get("timeout") or {}
        timeout = _client_timeout(steps.get("connect"), steps.get("read"), steps.get("pool"),
                                  request.extensions.get(TOTAL_TIMEOUT))
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = await request.aread()
        try:
            response = await session.request(
                request.method, _aiohttp_url(str(request.url)), headers=_header_text(request),
                data=content or None, allow_redirects=False, auto_decompress=False,
                timeout=timeout)
        except Exception as exc:
            error = as_httpx_error(exc, request)
            if error is None:
                raise
            raise error from exc
        return httpx.Response(response.status, headers=response.raw_headers,
                              stream=_AnswerStream(response, request), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- the client ----------------------------------------------------------------------------------


def request_timeout(seconds: float, *, pool: float | None = None) -> httpx.Timeout:
    """The step timeouts of one send: `pool` (waiting for a connection, resolving and
    connecting) is never shorter than `seconds`."""
    return httpx.Timeout(seconds, pool=max(seconds, pool or 0.0))


class _KeptNowhere(httpx.Cookies):
    """A cookie jar that keeps nothing: `Set-Cookie` answers are not even parsed."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


@functools.lru_cache(maxsize=64)
def _timeout_extension(seconds: float) -> dict[str, float | None]:
    return httpx.Timeout(seconds).as_dict()


class DeliveryClient(httpx.AsyncClient):
    """The shared outgoing client: an `httpx.AsyncClient` over a given transport that
    follows no redirects, takes no proxy from the environment, and keeps no cookies
    (a cookie one subscriber sets must not ride along on later deliveries, to it or to
    another endpoint on the same host).

    `open_post` sends the dispatcher's one kind of request without the per-request layers
    httpx runs for auth, redirects, event hooks, mounts and cookies: this client has none
    of them, and those layers cost a third of a delivery's CPU.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout) -> None:
        super().__init__(transport=transport, timeout=timeout, follow_redirects=False,
                         trust_env=False)
        self._delivery_transport = transport

    @property
    def cookies(self) -> httpx.Cookies:
        jar = self.__dict__.get("_kept_nowhere")
        if jar is None:
            jar = self.__dict__["_kept_nowhere"] = _KeptNowhere()
        return jar

    @cookies.setter
    def cookies(self, value: Any) -> None:
        return None

    def post_request(self, url: httpx.URL, *, content: bytes, headers: dict[str, str],
                     timeout: float) -> httpx.Request:
        """The request `build_request("POST", url, content=..., headers=..., timeout=...)`
        builds, header for header in the same order (tests/dispatch checks it): `Host`, the
        client's default headers overlaid by `headers`, `Content-Length`; the timeout as an
        extension, and as the request's `total_timeout`. Built directly, because httpx's
        generic path (encoding the content, merging and re-merging header lists) costs more
        than sending the request."""
        overridden = {name.lower() for name in headers}
        merged: list[tuple[str | bytes, str | bytes]] = [
            (name, value) for name, value in self.headers.raw
            if name.decode("latin-1").lower() not in overridden]
        # Header text is sent as UTF-8 (`dispatch.outgoing.wire_text`), as aiohttp writes it.
        merged.extend((name, value.encode("utf-8")) for name, value in headers.items())
        auto: list[tuple[str | bytes, str | bytes]] = [(b"Host", url.netloc)] if url.host else []
        if content:
            merged.append((b"Content-Length", str(len(content)).encode("ascii")))
        else:
            auto.append((b"Content-Length", b"0"))
        request = httpx.Request("POST", url, headers=auto + merged,  # type: ignore[arg-type]
                                stream=httpx.ByteStream(content),
                                extensions={"timeout": dict(_timeout_extension(timeout)),
                                            TOTAL_TIMEOUT: timeout})
        request.read()
        return request

    async def open_post(self, url: httpx.URL, *, content: bytes, headers: dict[str, str],
                        timeout: float) -> httpx.Response:
        """POST and return the response with its body unread: read it, then `aclose()` it
        (what `self.stream("POST", ...)` does, without the layers this client never uses).
        `timeout` bounds the whole exchange, the answer's body included."""
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        request = self.post_request(url, content=content, headers=headers, timeout=timeout)
        return await self._delivery_transport.handle_async_request(request)


def build_http_client(
    *,
    max_connections: int,
    timeout: float,
    allowlist: Allowlist | None,
    inner_resolver: AbstractResolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    pool_timeout: float | None = None,
) -> DeliveryClient:
    """The process's one outgoing client: httpx API over an aiohttp connector with the SSRF
    guard (`dispatch.ssrf`), keep-alive for every connection, redirects not followed, no
    proxy from the environment, no cookies. The aiohttp session is created on first use,
    inside the running loop."""
    networks = networks_of(allowlist)
    context = ssl_context or httpx.create_ssl_context()

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            resolver=GuardedResolver(networks, inner_resolver),
            ttl_dns_cache=DNS_CACHE_SECONDS,
            keepalive_timeout=KEEPALIVE_SECONDS,
            enable_cleanup_closed=True,
            socket_factory=guarded_socket_factory(networks),
            ssl=context,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False,
                                     cookie_jar=aiohttp.DummyCookieJar())

    return DeliveryClient(transport=DeliveryTransport(session),
                          timeout=request_timeout(timeout, pool=pool_timeout))

"""One delivery POST on the shared client, and its answer read to at most 8 KiB.

Relay asks for `Accept-Encoding: identity`. A subscriber that compresses anyway gets one
layer (gzip or deflate) decoded incrementally, never past the kept 8 KiB; the raw bytes
read are capped too, so a small compressed answer cannot expand into gigabytes. An answer
with more than one encoding layer is refused (`AnswerEncodingError`, error `protocol`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import httpx

from dispatch.delivery_client import DeliveryClient

RESPONSE_BODY_LIMIT = 8 * 1024
RAW_READ_LIMIT = 256 * 1024
"""Raw (still encoded) bytes read at most, whatever they decode to."""

_GZIP = frozenset({"gzip", "x-gzip"})
_DEFLATE = "deflate"
_NO_LAYER = frozenset({"", "identity"})


class AnswerEncodingError(httpx.DecodingError):
    """The answer's Content-Encoding is one Relay does not decode (several layers)."""


@dataclass(slots=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    """Lower-case names; a repeated header joined with ", "."""
    body: bytes
    """At most the limit, decoded when the answer had one gzip or deflate layer."""


def response_headers(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names; a repeated header joined with ", "."""
    joined: dict[str, str] = {}
    for name, value in headers.multi_items():
        name = name.lower()
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def encoding_layers(headers: dict[str, str]) -> list[str]:
    """The Content-Encoding layers in the order they were applied, `identity` left out
    (`headers` as `response_headers` gives them)."""
    value = headers.get("content-encoding")
    if not value:
        return []
    layers = [token.strip().lower() for token in value.split(",")]
    return [layer for layer in layers if layer not in _NO_LAYER]


class _LayerDecoder:
    """One gzip/deflate layer decoded with a bound on its output (zlib's `max_length`)."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.inflate: zlib._Decompress | None = None
        if layer in _GZIP:
            self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif layer == _DEFLATE:
            self.inflate = zlib.decompressobj()  # zlib-wrapped; raw deflate retried below
        self.first = True

    def decode(self, chunk: bytes, room: int) -> bytes:
        """At most `room` decoded bytes of `chunk` (unknown layers pass bytes through)."""
        if self.inflate is None:
            return chunk[:room]
        try:
            out = self.inflate.decompress(chunk, room)
        except zlib.error:
            if not (self.first and self.layer == _DEFLATE):
                raise httpx.DecodingError(f"the answer is not valid {self.layer}") from None
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._raw_deflate(chunk, room)
        self.first = False
        return out

    def _raw_deflate(self, chunk: bytes, room: int) -> bytes:
        assert self.inflate is not None
        try:
            return self.inflate.decompress(chunk, room)
        except zlib.error:
            raise httpx.DecodingError("the answer is not valid deflate") from None


async def read_capped(response: httpx.Response, layers: list[str],
                      limit: int = RESPONSE_BODY_LIMIT, raw_limit: int = RAW_READ_LIMIT) -> bytes:
    """At most `limit` decoded bytes of the body (encoded in `layers`), from at most
    `raw_limit` raw bytes read (`aiter_raw`: httpx's own decoders never run). The rest is
    never read."""
    if len(layers) > 1:
        raise AnswerEncodingError(
            f"the answer has {len(layers)} content-encoding layers "
            f"({', '.join(layers)}); at most one is decoded")
    decoder = _LayerDecoder(layers[0]) if layers else None
    chunks: list[bytes] = []
    size = raw = 0
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        piece = chunk if decoder is None else decoder.decode(chunk, limit - size)
        chunks.append(piece[:limit - size])
        size += len(chunks[-1])
        if size >= limit or raw >= raw_limit:
            break
    return b"".join(chunks)


def has_no_body(status_code: int, headers: dict[str, str]) -> bool:
    """Whether HTTP says the answer has no body (1xx, 204, 304, `Content-Length: 0`): the
    usual answer to a webhook, which then costs no read."""
    return (status_code in (204, 304) or status_code < 200
            or headers.get("content-length") == "0")


async def post_capped(client: DeliveryClient, url: httpx.URL, *, content: bytes,
                      headers: dict[str, str], timeout: float,
                      limit: int = RESPONSE_BODY_LIMIT) -> Answer:
    """POST `content` and read at most `limit` bytes of the answer; raises what httpx raises."""
    response = await client.open_post(url, content=content, headers=headers, timeout=timeout)
    try:
        joined = response_headers(response.headers)
        if has_no_body(response.status_code, joined):
            body = b""
        else:
            body = await read_capped(response, encoding_layers(joined), limit)
    finally:
        await response.aclose()
    return Answer(response.status_code, joined, body)

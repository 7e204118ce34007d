"""One delivery POST on the shared client, and its answer read to at most 8 KiB."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from dispatch.ssrf import DeliveryClient

RESPONSE_BODY_LIMIT = 8 * 1024


@dataclass(slots=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    """Lower-case names; a repeated header joined with ", "."""
    body: bytes
    """At most the limit, decoded when the answer had a Content-Encoding."""


def response_headers(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names; a repeated header joined with ", "."""
    joined: dict[str, str] = {}
    for name, value in headers.multi_items():
        name = name.lower()
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


async def read_capped(response: httpx.Response, limit: int = RESPONSE_BODY_LIMIT) -> bytes:
    """At most `limit` bytes of the body (decoded, as `aiter_bytes` gives it); the rest is
    never read. Without a Content-Encoding the decoded bytes are the raw bytes: they are
    read without httpx's decoding layers."""
    chunks: list[bytes] = []
    size = 0
    encoded = "content-encoding" in response.headers
    async for chunk in (response.aiter_bytes() if encoded else response.aiter_raw()):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


async def post_capped(client: DeliveryClient, url: httpx.URL, *, content: bytes,
                      headers: dict[str, str], timeout: float,
                      limit: int = RESPONSE_BODY_LIMIT) -> Answer:
    """POST `content` and read at most `limit` bytes of the answer; raises what httpx raises."""
    response = await client.open_post(url, content=content, headers=headers, timeout=timeout)
    try:
        body = await read_capped(response, limit)
    finally:
        await response.aclose()
    return Answer(response.status_code, response_headers(response.headers), body)

"""One HTTP attempt: sign, send the event's exact bytes, read at most 8 KiB of the answer.

Never raises for anything the network or the subscriber does: every way an attempt can
end is returned as an `AttemptResult`, classified where it arises.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from dispatch.endpoints import Target
from dispatch.outgoing import outgoing_headers
from dispatch.queue import Claimed
from dispatch.signing import signature_header
from dispatch.ssrf import (
    Allowlist,
    DeliveryClient,
    check_url_target,
    classify_send_error,
    describe_send_error,
)

RESPONSE_BODY_LIMIT = 8 * 1024


@dataclass(slots=True)
class AttemptResult:
    started_at: datetime
    duration_ms: float
    request_headers: dict[str, str]
    status_code: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: str = ""
    error: str | None = None
    """None when a response came; else timeout, connect, dns, tls, ssrf_blocked, protocol."""
    error_detail: str | None = None


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


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    """The endpoint URL parsed once, not at every attempt."""
    return httpx.URL(url)


_check_literal_target = functools.lru_cache(maxsize=4096)(check_url_target)
"""`check_url_target` remembered for URLs it let through (a refusal raises: never cached)."""


def request_headers(job: Claimed, target: Target, now: datetime, version: str) -> dict[str, str]:
    timestamp = int(now.timestamp())
    return outgoing_headers(
        job.headers, target.headers,
        event_id=job.event_id, timestamp=timestamp,
        signature=signature_header(target.signing_secrets(now), job.event_id, timestamp,
                                   job.body),
        event_type=job.event_type, source_slug=job.source_slug, attempt=job.attempt,
        delivery_id=job.id, version=version, content_type=job.content_type or None,
    )


async def send(client: DeliveryClient, job: Claimed, target: Target, *,
               allowlist: Allowlist, version: str) -> AttemptResult:
    started_at = datetime.now(UTC)
    headers = request_headers(job, target, started_at, version)
    clock = time.perf_counter()
    result = AttemptResult(started_at=started_at, duration_ms=0.0, request_headers=headers)
    try:
        _check_literal_target(target.url, tuple(allowlist))
        async with asyncio.timeout(target.timeout):
            response = await client.open_post(parsed_url(target.url), content=job.body,
                                              headers=headers, timeout=target.timeout)
            try:
                body = await read_capped(response)
            finally:
                await response.aclose()
        result.status_code = response.status_code
        result.response_headers = response_headers(response.headers)
        result.response_body = body.decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001 - every failure is an attempt outcome
        if isinstance(exc, TimeoutError):
            result.error = "timeout"
            result.error_detail = f"no complete answer within {target.timeout:g} s"
        else:
            result.error = classify_send_error(exc)
            result.error_detail = describe_send_error(exc)
    result.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
    return result

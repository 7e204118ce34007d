"""One HTTP attempt: sign, send the event's exact bytes, read at most 8 KiB of the answer
(`dispatch.posting`).

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

from dispatch.endpoint_headers import mask_sent
from dispatch.endpoints import Target
from dispatch.outgoing import outgoing_headers, split_sendable
from dispatch.posting import post_capped
from dispatch.queue import Claimed
from dispatch.signing import signature_header
from dispatch.ssrf import (
    Allowlist,
    DeliveryClient,
    check_url_target,
    classify_send_error,
    describe_send_error,
)


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


def dropped_note(names: list[str]) -> str:
    """The attempt's note for headers left out because no HTTP request can carry them."""
    return ("not forwarded (characters a header cannot carry): "
            + ", ".join(repr(name) for name in names[:10]))


async def send(client: DeliveryClient, job: Claimed, target: Target, *,
               allowlist: Allowlist, version: str) -> AttemptResult:
    started_at = datetime.now(UTC)
    headers, dropped = split_sendable(request_headers(job, target, started_at, version))
    clock = time.perf_counter()
    # The record keeps the endpoint's own header values masked: they are secrets.
    result = AttemptResult(started_at=started_at, duration_ms=0.0,
                           request_headers=mask_sent(headers, target.headers))
    if dropped:
        result.error_detail = dropped_note(dropped)
    try:
        _check_literal_target(target.url, tuple(allowlist))
        async with asyncio.timeout(target.timeout):
            answer = await post_capped(client, parsed_url(target.url), content=job.body,
                                       headers=headers, timeout=target.timeout)
        result.status_code = answer.status_code
        result.response_headers = answer.headers
        result.response_body = answer.body.decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001 - every failure is an attempt outcome
        if isinstance(exc, TimeoutError):
            result.error = "timeout"
            result.error_detail = f"no complete answer within {target.timeout:g} s"
        else:
            result.error = classify_send_error(exc)
            result.error_detail = describe_send_error(exc)
    result.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
    return result

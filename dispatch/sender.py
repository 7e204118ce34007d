"""One attempt: render what the endpoint's kind sends (`dispatch.notify.render`), then
POST it (signed for webhooks; `dispatch.posting` reads at most 8 KiB of the answer) or
mail it (`dispatch.mailer`).

Never raises for anything the network or the subscriber does: every way an attempt can
end is returned as an `AttemptResult`, classified where it arises.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

import httpx

from dispatch.attempt_result import AttemptResult
from dispatch.delivery_client import DeadlineExceeded, DeliveryClient
from dispatch.endpoint_headers import mask_sent
from dispatch.endpoints import Target
from dispatch.mailer import send_mail
from dispatch.notify import discord
from dispatch.notify.email import BadMailto
from dispatch.notify.render import (
    CHAT_BODIES,
    notification_mail,
    notification_post,
    transformed_body,
)
from dispatch.notify.smtp import SmtpServer
from dispatch.notify.templates import EventView, TemplateProblem
from dispatch.outgoing import notification_headers, outgoing_headers, split_sendable
from dispatch.posting import post_capped
from dispatch.queue import Claimed
from dispatch.signing import signature_header
from dispatch.ssrf import (
    Allowlist,
    check_url_target,
    classify_send_error,
    describe_send_error,
)

__all__ = ["AttemptResult", "send"]


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    """The endpoint URL parsed once, not at every attempt."""
    return httpx.URL(url)


_check_literal_target = functools.lru_cache(maxsize=4096)(check_url_target)
"""`check_url_target` remembered for URLs it let through (a refusal raises: never cached).
Called with the allow-list as a frozenset, which keeps its hash: a tuple of networks would
be hashed again, network by network, at every attempt."""


def event_view(job: Claimed) -> EventView:
    return EventView(id=job.event_id, source=job.source_slug, event_type=job.event_type,
                     received_at=job.received_at, headers=job.headers, body=job.body,
                     content_type=job.content_type)


def request_headers(job: Claimed, target: Target, now: datetime, version: str,
                    body: bytes | None = None) -> dict[str, str]:
    timestamp = int(now.timestamp())
    return outgoing_headers(
        job.headers, target.headers,
        event_id=job.event_id, timestamp=timestamp,
        signature=signature_header(target.signing_secrets(now), job.event_id, timestamp,
                                   job.body if body is None else body),
        event_type=job.event_type, source_slug=job.source_slug, attempt=job.attempt,
        delivery_id=job.id, version=version, content_type=job.content_type or None,
    )


def _refused(started_at: datetime, headers: dict[str, str], error: str,
             detail: str) -> AttemptResult:
    return AttemptResult(started_at=started_at, duration_ms=0.0, request_headers=headers,
                         error=error, error_detail=detail, permanent=True)


def dropped_note(names: list[str]) -> str:
    """The attempt's note for headers left out because no HTTP request can carry them."""
    return ("not forwarded (characters a header cannot carry): "
            + ", ".join(repr(name) for name in names[:10]))


async def send(client: DeliveryClient, job: Claimed, target: Target, *,
               allowlist: Allowlist, version: str, smtp: SmtpServer | None = None,
               smtp_from: str = "") -> AttemptResult:
    """One attempt for any endpoint kind; a template that cannot render fails it for
    good (error kind `template`) before anything is sent."""
    started_at = datetime.now(UTC)
    try:
        if target.kind == "email":
            mail = notification_mail(target.url, target.template, event_view(job))
            return await send_mail(mail, smtp, smtp_from, allowlist=tuple(allowlist),
                                   timeout=target.timeout)
        if target.kind not in CHAT_BODIES:
            body = transformed_body(target.template, event_view(job)) if target.template else None
            headers = request_headers(job, target, started_at, version, body)
            content = job.body if body is None else body
        else:
            post = notification_post(target.kind, target.template, event_view(job))
            headers = notification_headers(target.headers, version, post.content_type)
            content = post.body
    except TemplateProblem as exc:
        return _refused(started_at, {}, "template", str(exc))
    except BadMailto as exc:
        return _refused(started_at, {}, "config", str(exc))
    headers, dropped = split_sendable(headers)
    clock = time.perf_counter()
    # The record keeps the endpoint's own header values masked: they are secrets.
    result = AttemptResult(started_at=started_at, duration_ms=0.0,
                           request_headers=mask_sent(headers, target.headers))
    if dropped:
        result.error_detail = dropped_note(dropped)
    try:
        _check_literal_target(target.url, frozenset(allowlist))
        answer = await post_capped(client, parsed_url(target.url), content=content,
                                   headers=headers, timeout=target.timeout)
        result.status_code = answer.status_code
        result.response_headers = answer.headers
        result.response_body = answer.body.decode("utf-8", "replace")
        if target.kind == "discord":
            result.retry_after = discord.retry_after(answer.status_code, answer.body)
    except Exception as exc:  # noqa: BLE001 - every failure is an attempt outcome
        if isinstance(exc, DeadlineExceeded):
            result.error = "timeout"
            result.error_detail = f"no complete answer within {target.timeout:g} s"
        else:
            result.error = classify_send_error(exc)
            result.error_detail = describe_send_error(exc)
    result.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
    return result

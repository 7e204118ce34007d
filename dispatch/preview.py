"""What a delivery of an event to an endpoint would send, computed without sending
(`POST /api/v1/endpoints/{id}/preview`): the same rendering the dispatcher does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dispatch.endpoint_headers import mask_sent
from dispatch.notify.email import BadMailto
from dispatch.notify.render import (
    CHAT_BODIES,
    notification_mail,
    notification_post,
    transformed_body,
)
from dispatch.notify.templates import EventView
from dispatch.outgoing import notification_headers, outgoing_headers
from dispatch.signing import signature_header
from relay.crypto import decrypt_secret

PREVIEW_DELIVERY_ID = "dlv_preview"


def preview_request(*, kind: str, url: str, endpoint_headers: dict[str, str],
                    secret_encrypted: str, template: dict[str, Any] | None,
                    event: EventView, version: str) -> dict[str, Any]:
    """{"method", "url", "headers", "body"} for HTTP kinds, {"to", "subject", "text",
    "html"} for email. Raises TemplateProblem or BadMailto."""
    if kind == "email":
        mail = notification_mail(url, template, event)
        return {"to": mail.to, "subject": mail.subject, "text": mail.text, "html": mail.html}
    if kind in CHAT_BODIES:
        post = notification_post(kind, template, event)
        headers = notification_headers(endpoint_headers, version, post.content_type)
        body = post.body
    else:
        transformed = transformed_body(template, event)
        body = event.body if transformed is None else transformed
        now = int(datetime.now(UTC).timestamp())
        headers = outgoing_headers(
            event.headers, endpoint_headers, event_id=event.id, timestamp=now,
            signature=signature_header([decrypt_secret(secret_encrypted)], event.id, now, body),
            event_type=event.event_type, source_slug=event.source, attempt=1,
            delivery_id=PREVIEW_DELIVERY_ID, version=version,
            content_type=event.content_type or None)
    # The endpoint's own header values are secrets: masked, as in attempt records.
    return {"method": "POST", "url": url, "headers": mask_sent(headers, endpoint_headers),
            "body": body.decode("utf-8", "replace")}


__all__ = ["BadMailto", "preview_request"]

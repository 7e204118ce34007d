"""What one delivery sends, per endpoint kind, as pure functions: the sender sends it,
the preview API shows it.

- `webhook`: the event's bytes, or `template.body` rendered (a transformation; it must
  be valid JSON when the content type is JSON).
- `slack`, `discord`, `teams`: a JSON message built from the template (or the preset).
- `email`: a `Mail` (recipients, subject, text and HTML parts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dispatch.notify import discord, slack, teams
from dispatch.notify.email import Mail, compose, recipients
from dispatch.notify.message import Message
from dispatch.notify.presets import preset_for
from dispatch.notify.templates import EventView, TemplateProblem, context_for, render_spec
from dispatch.notify.text import one_line

NOTIFICATION_KINDS = frozenset({"slack", "discord", "teams", "email"})
CHAT_BODIES = {"slack": slack.body, "discord": discord.body, "teams": teams.body}
PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord", "teams": "Teams", "email": "SMTP"}


@dataclass(frozen=True, slots=True)
class Post:
    """An HTTP POST of a notification: the body and the headers it needs."""

    body: bytes
    content_type: str = "application/json"


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def message_for(template: Mapping[str, Any] | None, event: EventView) -> Message:
    """The neutral message: the endpoint's template, falling back part by part on the
    preset (a template giving only `title` keeps the preset's text and fields)."""
    context = context_for(event)
    preset = preset_for(event.event_type, event.headers, context["payload"])
    spec = dict(preset)
    if template:
        spec.update({key: value for key, value in template.items()
                     if key != "body" and value is not None})
    rendered = render_spec(spec, context)
    title = one_line(rendered.get("title", "")) or (event.event_type or "Event")
    url = rendered.get("url", "").strip() or None
    if url is not None and not url.lower().startswith(("http://", "https://")):
        url = None
    return Message(title=title, text=rendered.get("text", ""), fields=rendered["fields"],
                   url=url)


def transformed_body(template: Mapping[str, Any] | None, event: EventView) -> bytes | None:
    """A webhook endpoint's `template.body` rendered (None: forward the event's bytes)."""
    if not template or template.get("body") is None:
        return None
    rendered = render_spec({"body": template["body"]}, context_for(event))["body"]
    if is_json(event.content_type):
        try:
            json.loads(rendered)
        except ValueError as exc:
            raise TemplateProblem(
                f"body: the template rendered invalid JSON (the event's content type is "
                f"{event.content_type}): {exc}") from None
    return rendered.encode()


def notification_post(kind: str, template: Mapping[str, Any] | None, event: EventView) -> Post:
    return Post(CHAT_BODIES[kind](message_for(template, event)))


def notification_mail(url: str, template: Mapping[str, Any] | None, event: EventView) -> Mail:
    return compose(message_for(template, event), recipients(url))


def gone_reason(kind: str, status_code: int | None) -> str | None:
    """Why a notification endpoint is disabled when its deliveries run out of retries on
    this answer: a chat webhook that answers 404 was deleted on the platform's side."""
    if kind in CHAT_BODIES and status_code == 404:
        return (f"the {PLATFORM_NAMES[kind]} webhook answered 404 Not Found: it was "
                "deleted or its URL is wrong")
    return None

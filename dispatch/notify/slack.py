"""Slack incoming-webhook payloads: `{"text", "blocks"}` in Block Kit.

Limits kept: a section's text at most 3,000 characters, a section's fields at most 10 of
2,000 characters each, at most 50 blocks; `text` (the notification fallback) is kept
under 3,000 too. Texts are mrkdwn with `&`, `<`, `>` escaped, so event data cannot
mention `@channel` or inject links.
"""

from __future__ import annotations

import json
from typing import Any

from dispatch.notify.message import Message
from dispatch.notify.text import cut

SECTION_TEXT = 3000
FIELD_TEXT = 2000
FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
FALLBACK_TEXT = 3000


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT)}}


def payload(message: Message) -> dict[str, Any]:
    title = escape(message.title)
    linkable = message.url and not any(ch in message.url for ch in "<>| \n")
    heading = f"*<{message.url}|{title}>*" if linkable else f"*{title}*"
    blocks: list[dict[str, Any]] = [_section(heading)]
    text = escape(message.text.strip())
    while text and len(blocks) < MAX_BLOCKS - 1:
        blocks.append(_section(text))
        text = text[SECTION_TEXT - 1:] if len(text) > SECTION_TEXT else ""
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{escape(name)}*\n{escape(value)}", FIELD_TEXT)}
        for name, value in message.fields
    ]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        if len(blocks) >= MAX_BLOCKS:
            break
        blocks.append({"type": "section", "fields": fields[start:start + FIELDS_PER_SECTION]})
    return {"text": cut(message.title, FALLBACK_TEXT), "blocks": blocks[:MAX_BLOCKS]}


def body(message: Message) -> bytes:
    return json.dumps(payload(message), ensure_ascii=False).encode()

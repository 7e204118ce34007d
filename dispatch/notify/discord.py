"""Discord webhook payloads: `{"content", "embeds", "allowed_mentions"}`.

Limits kept: content 2,000 characters; one embed with title 256, description 4,096, at
most 25 fields (name 256, value 1,024), and all of the embed's text at most 6,000.
`allowed_mentions: {"parse": []}` so event text cannot ping anyone.
"""

from __future__ import annotations

import json
from typing import Any

from dispatch.notify.message import Message
from dispatch.notify.text import cut

CONTENT = 2000
TITLE = 256
DESCRIPTION = 4096
MAX_FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1024
EMBED_TOTAL = 6000


def payload(message: Message) -> dict[str, Any]:
    title = cut(message.title, TITLE)
    budget = EMBED_TOTAL - len(title)
    fields: list[dict[str, Any]] = []
    for name, value in message.fields[:MAX_FIELDS]:
        name, value = cut(name, FIELD_NAME), cut(value, FIELD_VALUE)
        if len(name) + len(value) > budget:
            break
        budget -= len(name) + len(value)
        fields.append({"name": name, "value": value, "inline": len(value) <= 40})
    embed: dict[str, Any] = {"title": title}
    description = cut(message.text.strip(), min(DESCRIPTION, budget))
    if description:
        embed["description"] = description
    if message.url:
        embed["url"] = message.url
    if fields:
        embed["fields"] = fields
    return {"content": "", "embeds": [embed], "allowed_mentions": {"parse": []}}


def body(message: Message) -> bytes:
    return json.dumps(payload(message), ensure_ascii=False).encode()


def retry_after(status_code: int, answer: bytes) -> float | None:
    """Seconds to wait from a 429's JSON `retry_after` (Discord sends it in the body,
    in seconds, with decimals)."""
    if status_code != 429:
        return None
    try:
        value = json.loads(answer).get("retry_after")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return float(value) if isinstance(value, int | float) and value >= 0 else None

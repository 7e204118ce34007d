"""Microsoft Teams Workflows (Power Automate) payloads: a message with one Adaptive Card
1.4 attachment. Teams refuses messages over about 28 KB, so the text is cut to keep the
card well under that."""

from __future__ import annotations

import json
from typing import Any

from dispatch.notify.message import Message
from dispatch.notify.text import cut

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_BYTES = 24 * 1024
"""The encoded message stays under this (Teams refuses about 28 KB and more)."""
TITLE = 500
TEXT = 12_000
FACT_VALUE = 1000
MAX_FACTS = 25


def card(message: Message, text_limit: int = TEXT, facts: int = MAX_FACTS) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": cut(message.title, TITLE), "weight": "Bolder",
         "size": "Medium", "wrap": True},
    ]
    if message.text.strip():
        body.append({"type": "TextBlock", "text": cut(message.text.strip(), text_limit),
                     "wrap": True})
    if message.fields:
        body.append({"type": "FactSet", "facts": [
            {"title": cut(name, 200), "value": cut(value, FACT_VALUE)}
            for name, value in message.fields[:facts]]})
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body,
    }
    if message.url:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": message.url}]
    return content


def _wrap(content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [
        {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}]}


def _size(document: dict[str, Any]) -> int:
    return len(json.dumps(document, ensure_ascii=False).encode())


def payload(message: Message) -> dict[str, Any]:
    """The message, its text (then its facts) shortened until it fits in MAX_BYTES."""
    text_limit, facts = TEXT, MAX_FACTS
    document = _wrap(card(message, text_limit, facts))
    while _size(document) > MAX_BYTES:
        if text_limit > 200:
            text_limit = text_limit // 2
        elif facts > 0:
            facts -= 5
        else:
            break
        document = _wrap(card(message, text_limit, max(facts, 0)))
    return document


def body(message: Message) -> bytes:
    return json.dumps(payload(message), ensure_ascii=False).encode()

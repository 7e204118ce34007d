"""Fake Slack, Discord and Teams webhook receivers on loopback.

Each validates a payload against the platform's documented schema and limits (a payload
the platform would refuse is answered 400 with the reason, as the platforms do), records
what it accepted, and can be told to answer 429 with the platform's rate-limit fields, or
404 as a deleted webhook does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers import free_port


class Invalid(ValueError):
    pass


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise Invalid(reason)


def _text(value: Any, limit: int, what: str, *, empty: bool = False) -> None:
    _check(isinstance(value, str), f"{what} must be a string")
    _check(empty or bool(value), f"{what} must not be empty")
    _check(len(value) <= limit, f"{what} is longer than {limit} characters ({len(value)})")


def validate_slack(payload: Any) -> None:
    """Incoming webhook: `text` and Block Kit `blocks` (section blocks)."""
    _check(isinstance(payload, dict), "payload must be an object")
    _check(set(payload) <= {"text", "blocks", "username", "icon_emoji", "icon_url"},
           f"unknown keys {sorted(set(payload) - {'text', 'blocks'})}")
    _check("text" in payload or "blocks" in payload, "no_text")
    if "text" in payload:
        _text(payload["text"], 40_000, "text")
    blocks = payload.get("blocks", [])
    _check(isinstance(blocks, list) and len(blocks) <= 50, "invalid_blocks: at most 50 blocks")
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        _check(isinstance(block, dict) and block.get("type") == "section",
               f"{where}: only section blocks are expected")
        _check("text" in block or "fields" in block, f"{where}: text or fields required")
        if "text" in block:
            _check(block["text"].get("type") in ("mrkdwn", "plain_text"), f"{where}.text.type")
            _text(block["text"].get("text"), 3000, f"{where}.text.text")
        if "fields" in block:
            _check(isinstance(block["fields"], list) and 1 <= len(block["fields"]) <= 10,
                   f"{where}.fields: 1 to 10 items")
            for item in block["fields"]:
                _check(item.get("type") in ("mrkdwn", "plain_text"), f"{where}.fields type")
                _text(item.get("text"), 2000, f"{where}.fields[].text")


def validate_discord(payload: Any) -> None:
    """Execute webhook: content, embeds and allowed_mentions with Discord's limits."""
    _check(isinstance(payload, dict), "payload must be an object")
    _check(set(payload) <= {"content", "embeds", "allowed_mentions", "username", "avatar_url"},
           "unknown keys")
    content = payload.get("content", "")
    _text(content, 2000, "content", empty=True)
    embeds = payload.get("embeds", [])
    _check(isinstance(embeds, list) and len(embeds) <= 10, "at most 10 embeds")
    _check(bool(content) or bool(embeds), "Cannot send an empty message")
    total = 0
    for embed in embeds:
        for key, limit in (("title", 256), ("description", 4096)):
            if key in embed:
                _text(embed[key], limit, f"embed.{key}")
                total += len(embed[key])
        fields = embed.get("fields", [])
        _check(isinstance(fields, list) and len(fields) <= 25, "at most 25 fields")
        for item in fields:
            _text(item.get("name"), 256, "field.name")
            _text(item.get("value"), 1024, "field.value")
            total += len(item["name"]) + len(item["value"])
        if "url" in embed:
            _check(str(embed["url"]).startswith(("http://", "https://")), "embed.url scheme")
    _check(total <= 6000, f"embeds hold {total} characters, more than 6000")
    _check(payload.get("allowed_mentions") == {"parse": []},
           "allowed_mentions must be {'parse': []} (no pings from event data)")


_CARD_ELEMENTS = {"TextBlock", "FactSet"}


def validate_teams(payload: Any) -> None:
    """Workflows webhook: a message with one Adaptive Card 1.4 attachment."""
    _check(isinstance(payload, dict) and payload.get("type") == "message",
           "type must be message")
    attachments = payload.get("attachments")
    _check(isinstance(attachments, list) and len(attachments) == 1, "one attachment")
    attachment = attachments[0]
    _check(attachment.get("contentType") == "application/vnd.microsoft.card.adaptive",
           "contentType must be application/vnd.microsoft.card.adaptive")
    card = attachment.get("content")
    _check(isinstance(card, dict) and card.get("type") == "AdaptiveCard", "AdaptiveCard")
    _check(card.get("version") == "1.4", "version 1.4")
    _check(isinstance(card.get("body"), list) and card["body"], "card body")
    for element in card["body"]:
        _check(element.get("type") in _CARD_ELEMENTS, f"unexpected {element.get('type')}")
        if element["type"] == "TextBlock":
            _text(element.get("text"), 20_000, "TextBlock.text")
        else:
            for fact in element.get("facts", []):
                _text(fact.get("title"), 1000, "fact.title")
                _text(fact.get("value"), 1000, "fact.value")
    for action in card.get("actions", []):
        _check(action.get("type") == "Action.OpenUrl" and action.get("url"), "actions")
    _check(len(json.dumps(payload, ensure_ascii=False).encode()) <= 28 * 1024,
           "message larger than 28 KB")


VALIDATORS = {"slack": validate_slack, "discord": validate_discord, "teams": validate_teams}


@dataclass
class Got:
    platform: str
    headers: dict[str, str]
    payload: Any


@dataclass
class Platforms:
    port: int = field(default_factory=free_port)
    accepted: list[Got] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    rate_limit: dict[str, int] = field(default_factory=dict)
    """Path → how many next requests answer 429."""
    deleted: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None

    def url(self, platform: str, name: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{platform}/{name}"

    def of(self, platform: str, name: str = "hook") -> list[Got]:
        return [got for got in self.accepted
                if got.headers.get("x-path") == f"/{platform}/{name}"]

    async def _handle(self, request: web.Request) -> web.Response:
        platform = request.match_info["platform"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["x-path"] = request.path
        if request.path in self.deleted:
            return web.Response(status=404, text="no_service" if platform == "slack"
                                else '{"message": "Unknown Webhook", "code": 10015}')
        if self.rate_limit.get(request.path, 0) > 0:
            self.rate_limit[request.path] -= 1
            if platform == "discord":
                # Discord puts the wait in the JSON body (seconds, with decimals).
                return web.json_response(
                    {"message": "You are being rate limited.", "retry_after": 30.5,
                     "global": False}, status=429,
                    headers={"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                             "X-RateLimit-Reset-After": "30.5"})
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "30"})
        try:
            payload = json.loads(await request.read())
            VALIDATORS[platform](payload)
        except (ValueError, AttributeError, TypeError) as exc:
            self.refused.append(f"{platform}: {exc}")
            return web.Response(status=400, text=str(exc))
        self.accepted.append(Got(platform, headers, payload))
        if platform == "discord":
            return web.Response(status=204)
        return web.Response(status=200 if platform == "slack" else 202, text="ok")

    async def start(self) -> Platforms:
        app = web.Application()
        app.router.add_post("/{platform}/{name}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

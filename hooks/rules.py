"""Dedup-key and event-type rules: where in a request to find each, with per-kind defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from relay.json_depth import loads_bounded

MAX_KEY_LENGTH = 255

DEFAULT_DEDUP: dict[str, dict[str, str]] = {
    "github": {"header": "x-github-delivery"},
    "stripe": {"json_path": "id"},
    "standard_webhooks": {"header": "webhook-id"},
    "shopify": {"header": "x-shopify-webhook-id"},
}
DEFAULT_EVENT_TYPE: dict[str, dict[str, str]] = {
    "github": {"header": "x-github-event"},
    "stripe": {"json_path": "type"},
    "standard_webhooks": {"json_path": "type"},
    "shopify": {"header": "x-shopify-topic"},
}

_NOT_JSON = object()


def lookup_path(document: Any, path: str) -> Any:
    """`lookup_path({"a": {"b": 1}}, "a.b") == 1`; None when any step is missing.

    A numeric step indexes a list (`items.0.id`).
    """
    current = document
    for step in path.split("."):
        if isinstance(current, Mapping):
            if step not in current:
                return None
            current = current[step]
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return None
    return current


class ParsedBody:
    """The body parsed as JSON at most once, on first use (a body nested too deep counts
    as not JSON: `relay.json_depth`)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._value: Any = None
        self._parsed = False

    def value(self) -> Any:
        if not self._parsed:
            self._parsed = True
            try:
                self._value = loads_bounded(self._body)
            except ValueError:  # not JSON, or nested too deep to look into
                self._value = _NOT_JSON
        return None if self._value is _NOT_JSON else self._value


def effective_rule(configured: Mapping[str, str] | None, kind: str,
                   defaults: Mapping[str, Mapping[str, str]]) -> Mapping[str, str] | None:
    return configured if configured else defaults.get(kind)


def extract(rule: Mapping[str, str] | None, headers: Mapping[str, str],
            body: ParsedBody) -> str | None:
    """Apply a `{"header": name}` or `{"json_path": path}` rule; None when it finds nothing."""
    if not rule:
        return None
    if "header" in rule:
        value: Any = headers.get(rule["header"].lower())
    else:
        value = lookup_path(body.value(), rule["json_path"])
    if value is None or isinstance(value, dict | list):
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    # PostgreSQL text cannot hold NUL; a key is only compared, so a stand-in does.
    return text[:MAX_KEY_LENGTH].replace("\x00", "\ufffd") or None

"""What a live client asked to see: `{"type": "subscribe", "sources", "endpoints", "types"}`.

Each list narrows the messages it applies to; an empty or missing list lets everything
through. `types` applies to every message. `sources` applies to the messages about an
event: `event.received`, `ingest.rejected`, and `delivery.*`, whose source is the source
of their event (known for the events this process saw arrive; a delivery of an event it
did not see does not match). `endpoints` applies to `delivery.*` and `endpoint.disabled`.
`stats` is always sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MAX_FILTER_VALUES = 200
DELIVERY_TYPES = frozenset({"delivery.attempted", "delivery.succeeded", "delivery.failed"})


class SourceLookup(Protocol):
    """Event id → source slug, for the events this process saw arrive."""

    def get(self, event_id: str, /) -> str | None: ...


class SubscribeError(ValueError):
    """The client's subscribe message is malformed; the text says what to fix."""


@dataclass(frozen=True)
class Subscription:
    sources: frozenset[str] = frozenset()
    endpoints: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not (self.sources or self.endpoints or self.types)

    def describe(self) -> dict[str, Any]:
        return {
            "sources": sorted(self.sources),
            "endpoints": sorted(self.endpoints),
            "types": sorted(self.types),
        }

    def matches(self, item: Mapping[str, Any], source_of_event: SourceLookup) -> bool:
        """Whether one (non-batch) message passes; `source_of_event` maps event id → slug."""
        kind = item.get("type")
        if kind == "stats":
            return True
        if self.types and kind not in self.types:
            return False
        if self.sources and not self._source_matches(kind, item, source_of_event):
            return False
        return not self.endpoints or self._endpoint_matches(kind, item)

    def _source_matches(self, kind: Any, item: Mapping[str, Any],
                        source_of_event: SourceLookup) -> bool:
        if kind == "event.received":
            return _field(item, "event", "source") in self.sources
        if kind == "ingest.rejected":
            return item.get("source") in self.sources
        if kind in DELIVERY_TYPES:
            event_id = _field(item, "delivery", "event_id")
            return isinstance(event_id, str) and source_of_event.get(event_id) in self.sources
        return True

    def _endpoint_matches(self, kind: Any, item: Mapping[str, Any]) -> bool:
        if kind in DELIVERY_TYPES:
            return _field(item, "delivery", "endpoint_id") in self.endpoints
        if kind == "endpoint.disabled":
            return _field(item, "endpoint", "id") in self.endpoints
        return True


def _field(item: Mapping[str, Any], outer: str, inner: str) -> Any:
    nested = item.get(outer)
    return nested.get(inner) if isinstance(nested, Mapping) else None


def _names(payload: Mapping[str, Any], key: str) -> frozenset[str]:
    value = payload.get(key)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise SubscribeError(f"{key}: expected a list of strings")
    if len(value) > MAX_FILTER_VALUES:
        raise SubscribeError(f"{key}: at most {MAX_FILTER_VALUES} values")
    return frozenset(name for name in value if name)


def parse_subscribe(payload: Any) -> Subscription:
    """The subscription a client's `subscribe` message asks for."""
    if not isinstance(payload, Mapping):
        raise SubscribeError("send a JSON object such as {\"type\": \"subscribe\", \"types\": [...]}")
    return Subscription(
        sources=_names(payload, "sources"),
        endpoints=_names(payload, "endpoints"),
        types=_names(payload, "types"),
    )

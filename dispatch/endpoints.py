"""What the dispatcher needs to know about endpoints, cached in-process.

Two views, both refreshed exactly when an endpoint row changes (its `updated_at`):

- `Subscriptions`: the enabled endpoints and what they want, for routing. Each routing
  batch reads a stamp (`count(*)`, `max(updated_at)` over the endpoint table) with its
  events, which tells whether the cached list is still current, so an endpoint created,
  changed or disabled through any process is seen by the very next batch.
- `Targets`: how to send to one endpoint (URL, headers, secrets, limits). The claim
  returns each endpoint's `updated_at` with its deliveries; a differing value reloads
  that endpoint. No per-delivery endpoint query.

Circuit-breaker columns are written without touching `updated_at`: they are read fresh
from the claim instead, so they never invalidate these caches.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from django.conf import settings

from dispatch.endpoint_headers import decrypt_headers
from kernel.crypto import decrypt_secret

log = logging.getLogger("relay.dispatch")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Subscription:
    id: str
    event_types: list[str]
    sources: list[str]
    rule: dict[str, Any] | None
    updated_at: datetime | None = None


class Subscriptions:
    """The routing view of every enabled, not deleted endpoint."""

    _STAMP = "SELECT count(*) AS n, max(updated_at) AS changed FROM endpoint"
    _LOAD = (
        "SELECT id, event_types, sources, filter, updated_at FROM endpoint"
        " WHERE enabled AND deleted_at IS NULL ORDER BY id"
    )

    def __init__(self) -> None:
        self._stamp: tuple[int, datetime | None] | None = None
        self.items: list[Subscription] = []
        self.any_rule = False

    async def refresh(self, connection: asyncpg.Connection,
                      stamp: tuple[int, datetime | None] | None = None) -> list[Subscription]:
        """The current list; `stamp` (count, max updated_at) when the caller read it
        already, else it is read here."""
        if stamp is None:
            row = await connection.fetchrow(self._STAMP)
            assert row is not None, "an aggregate always answers one row"
            stamp = (row["n"], row["changed"])
        if stamp != self._stamp:
            rows = await connection.fetch(self._LOAD)
            self.items = [
                Subscription(r["id"], _json(r["event_types"]) or [], _json(r["sources"]) or [],
                             _json(r["filter"]), r["updated_at"])
                for r in rows
            ]
            self.any_rule = any(item.rule is not None for item in self.items)
            self._stamp = stamp
        return self.items


@dataclass(frozen=True)
class Target:
    """How to deliver to one endpoint."""

    id: str
    url: str
    headers: dict[str, str]
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    timeout: float
    max_in_flight: int
    rate_limit: float | None
    retry_schedule: list[float]
    updated_at: datetime
    kind: str = "webhook"
    template: dict[str, Any] | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, plus the previous one during its rotation overlap."""
        if (self.previous_secret and self.previous_secret_expires_at is not None
                and self.previous_secret_expires_at > now):
            return [self.secret, self.previous_secret]
        return [self.secret]


TARGET_COLUMNS = (
    "id, url, headers_encrypted, secret_encrypted, previous_secret_encrypted,"
    " previous_secret_expires_at, timeout_seconds, max_in_flight, rate_limit_per_second,"
    " retry_schedule, updated_at, kind, template"
)
"""The endpoint columns `target_from_row` reads."""


def target_from_row(row: Any) -> Target:
    previous = row["previous_secret_encrypted"]
    schedule = _json(row["retry_schedule"])
    return Target(
        id=row["id"],
        url=row["url"],
        headers=decrypt_headers(row["headers_encrypted"]),
        secret=decrypt_secret(row["secret_encrypted"]),
        previous_secret=decrypt_secret(previous) if previous else None,
        previous_secret_expires_at=row["previous_secret_expires_at"],
        timeout=row["timeout_seconds"] or settings.RELAY_DELIVERY_TIMEOUT,
        max_in_flight=max(1, row["max_in_flight"] or 1),
        rate_limit=row["rate_limit_per_second"] or None,
        retry_schedule=[float(step) for step in schedule] if schedule is not None
        else list(settings.RELAY_RETRY_SCHEDULE),
        updated_at=row["updated_at"],
        kind=row["kind"] or "webhook",
        template=_json(row["template"]),
    )


class Targets:
    _LOAD = (
        f"SELECT {TARGET_COLUMNS} FROM endpoint WHERE id = ANY($1::text[])"  # noqa: S608
    )

    def __init__(self) -> None:
        self._by_id: dict[str, Target] = {}
        self.unreadable: dict[str, tuple[datetime, str]] = {}
        """Endpoint id → (its updated_at, why) for endpoints whose secret cannot be
        decrypted: their deliveries wait, the others' go on."""
        self.resting: set[str] = set()
        """Endpoints whose circuit was open (or which were disabled) when last heard of:
        their waiting deliveries are parked, so no claim can lease many of them."""
        self._by_max_in_flight: list[Target] | None = []
        """The loaded endpoints not resting, smallest `max_in_flight` first (None: to be
        sorted again)."""

    def get(self, endpoint_id: str) -> Target | None:
        return self._by_id.get(endpoint_id)

    def _current(self, endpoint_id: str, changed: datetime | None) -> bool:
        cached = self._by_id.get(endpoint_id)
        if cached is not None:
            return cached.updated_at == changed
        broken = self.unreadable.get(endpoint_id)
        return broken is not None and broken[0] == changed

    async def ensure(self, connection: asyncpg.Connection,
                     wanted: dict[str, datetime | None]) -> None:
        """Load the endpoints whose cached version differs from `wanted` (id → updated_at)."""
        stale = [endpoint_id for endpoint_id, changed in wanted.items()
                 if not self._current(endpoint_id, changed)]
        if not stale:
            return
        for row in await connection.fetch(self._LOAD, stale):
            endpoint_id = row["id"]
            try:
                self.remember(target_from_row(row))
            except RuntimeError as exc:  # decrypt_secret: RELAY_SECRET_KEY differs
                self._by_id.pop(endpoint_id, None)
                self._by_max_in_flight = None
                if endpoint_id not in self.unreadable:
                    log.warning("dispatcher: deliveries to endpoint %s wait: %s",
                                endpoint_id, exc)
                self.unreadable[endpoint_id] = (row["updated_at"], str(exc))
            else:
                self.unreadable.pop(endpoint_id, None)

    def remember(self, target: Target) -> None:
        self._by_id[target.id] = target
        self._by_max_in_flight = None

    def note_resting(self, endpoint_id: str, resting: bool) -> None:
        """What the last settle of (or claim from) the endpoint said of its circuit."""
        if resting != (endpoint_id in self.resting):
            (self.resting.add if resting else self.resting.discard)(endpoint_id)
            self._by_max_in_flight = None

    def smallest_max_in_flight(self, leaving_out: Collection[str] = ()) -> int:
        """The smallest `max_in_flight` among the loaded endpoints a claim could lease
        many deliveries of: not resting and not in `leaving_out` (the claim excludes
        them). 0 before any endpoint is loaded: every one may limit the first claim.

        A resting endpoint's backlog is parked; should its circuit have closed meanwhile
        (another dispatcher's probe succeeded), a claim may lease more of it than its gate
        admits: those go back to the queue, announced, and the claimed rows say the
        circuit is closed (`note_resting`)."""
        if not self._by_id:
            return 0
        if self._by_max_in_flight is None:
            self._by_max_in_flight = sorted(
                (target for endpoint_id, target in self._by_id.items()
                 if endpoint_id not in self.resting),
                key=lambda target: target.max_in_flight)
        for target in self._by_max_in_flight:
            if target.id not in leaving_out:
                return target.max_in_flight
        return sys.maxsize


def utcnow() -> datetime:
    return datetime.now(UTC)

"""The alert evaluator, run by every dispatcher: a periodic pass over the alert rules,
woken early when a delivery fails for good.

Observations come from the database (endpoint health, attempts and refused requests in a
window) and, for `delivery.failed`, from the deliveries this dispatcher settled. Whether a
subject fires is decided again under the lock of its `alert_state` row, in the same
transaction that stores the alert event and its deliveries: several dispatchers evaluate
the same rules, and exactly one of them sends each firing.

Endpoints that an alert notifies are never the subject of an alert, so a failing
notification channel cannot raise alerts about itself in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from dispatch import queue
from dispatch.actions import disabled_by_hand
from dispatch.alert_rules import (
    EVENT_TYPE_PREFIX,
    StateView,
    Transition,
    alert_body,
    state_key,
    transition,
)
from dispatch.queue import pooled
from dispatch.rollups import MINUTE, Totals, floor_to, sums_by_endpoint
from kernel.bus import publish
from kernel.ids import new_id

if TYPE_CHECKING:
    from dispatch.settle import Settlement

log = logging.getLogger("relay.dispatch")

WAKE_DEBOUNCE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: str
    name: str
    conditions: list[dict[str, Any]]
    notify: list[str]
    cooldown: float


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    id: str
    enabled: bool
    disabled_reason: str | None
    circuit_opened_at: datetime | None
    consecutive_failures: int
    last_success_at: datetime | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


_RULES = ("SELECT id, name, conditions, notify, cooldown_seconds FROM alert WHERE enabled"
          " ORDER BY id")
_ENDPOINTS = ("SELECT id, enabled, disabled_reason, circuit_opened_at, consecutive_failures,"
              " last_success_at FROM endpoint WHERE deleted_at IS NULL")
_STATES = ("SELECT key, firing, last_fired_at FROM alert_state"
           " WHERE alert_id = ANY($1::text[]) AND (firing OR last_fired_at IS NOT NULL)")
def failure_window(now: datetime, seconds: int) -> tuple[datetime, datetime]:
    """The whole minutes of the endpoint rollups that cover the last `seconds` (the
    current minute so far included): the failure rate reads those few rows, never the
    attempts themselves, so its cost does not grow with traffic."""
    return (floor_to(now - timedelta(seconds=seconds), MINUTE),
            floor_to(now, MINUTE) + timedelta(seconds=MINUTE))


_REJECTIONS = """
SELECT s.slug, (SELECT count(*) FROM rejected_request r
                WHERE r.source_id = s.id
                  AND r.received_at > now() - make_interval(secs => $1)) AS n
FROM source s WHERE cardinality($2::text[]) = 0 OR s.slug = ANY($2::text[])
"""
_ENSURE_STATE = """
INSERT INTO alert_state (key, alert_id, condition, subject, firing, updated_at)
VALUES ($1, $2, $3, $4, false, now()) ON CONFLICT (key) DO NOTHING
"""
_LOCK_STATE = "SELECT firing, last_fired_at FROM alert_state WHERE key = $1 FOR UPDATE"
_WRITE_STATE = """
UPDATE alert_state SET firing = $2, last_fired_at = coalesce($3, last_fired_at),
    last_event_id = $4, updated_at = now()
WHERE key = $1
"""
_INSERT_ALERT_EVENT = """
INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at, method,
                   query, headers, content_type, size, body)
VALUES ($1, NULL, NULL, $2, NULL, $3, 'POST', '', $4::jsonb, 'application/json', $5, $6)
"""
_LIVE_ENDPOINTS = ("SELECT id FROM endpoint WHERE id = ANY($1::text[]) AND deleted_at IS NULL"
                   " ORDER BY id")


class AlertEvaluator:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.wake = asyncio.Event()
        self.failed: dict[str, dict[str, Any]] = {}
        """Endpoint id → the last delivery this process saw fail for good, until evaluated."""
        self.stopping = False

    def note_settled(self, items: Iterable[Settlement]) -> None:
        """Settlements written by this dispatcher: remember deliveries that failed for
        good (not those of alert events) and wake the evaluator."""
        woke = False
        for item in items:
            if not item.applied or item.status != "failed":
                if not item.success:
                    woke = True
                continue
            if (item.job.event_type or "").startswith(EVENT_TYPE_PREFIX):
                continue
            self.failed[item.job.endpoint_id] = {
                "delivery_id": item.job.id, "event_id": item.job.event_id,
                "status_code": item.result.status_code,
                "error": item.result.error_detail or item.result.error
                or (f"HTTP {item.result.status_code}" if item.result.status_code else None),
            }
            woke = True
        if woke:
            self.wake.set()

    async def run(self) -> None:
        failing = False
        while not self.stopping:
            self.wake.clear()
            try:
                await self.evaluate()
                failing = False
            except Exception as exc:  # noqa: BLE001 - the database comes back; so do we
                if not failing:
                    log.warning("dispatcher: cannot evaluate alerts (%s); retrying", exc)
                    failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
            await asyncio.sleep(WAKE_DEBOUNCE_SECONDS if self.wake.is_set() else 0)

    async def evaluate(self, now: datetime | None = None) -> list[str]:
        """One pass over every enabled rule; returns the ids of the alert events sent."""
        now = now or datetime.now(UTC)
        failed, self.failed = self.failed, {}
        sent: list[str] = []
        async with pooled() as connection:
            rules = [
                AlertRule(row["id"], row["name"], _json(row["conditions"]) or [],
                          _json(row["notify"]) or [], float(row["cooldown_seconds"]))
                for row in await connection.fetch(_RULES)
            ]
            if not rules:
                return sent
            notified = {endpoint_id for rule in rules for endpoint_id in rule.notify}
            endpoints = [
                EndpointHealth(row["id"], row["enabled"], row["disabled_reason"],
                               row["circuit_opened_at"], row["consecutive_failures"] or 0,
                               row["last_success_at"])
                for row in await connection.fetch(_ENDPOINTS)
                if row["id"] not in notified
            ]
            states = {
                row["key"]: StateView(row["firing"], row["last_fired_at"])
                for row in await connection.fetch(_STATES, [rule.id for rule in rules])
            }
            for rule in rules:
                for index, condition in enumerate(rule.conditions):
                    observed = await self._observe(connection, condition, endpoints, failed,
                                                   states, rule, index)
                    for subject, (active, again, seen) in observed.items():
                        key = state_key(rule.id, index, subject)
                        if transition(states.get(key), active, now, rule.cooldown,
                                      again=again) is None:
                            continue
                        event_id = await self._apply(connection, rule, index, condition,
                                                     subject, seen, active, again, now)
                        if event_id is not None:
                            sent.append(event_id)
        return sent

    async def _observe(self, connection: asyncpg.Connection, condition: dict[str, Any],
                       endpoints: list[EndpointHealth], failed: dict[str, dict[str, Any]],
                       states: dict[str, StateView], rule: AlertRule, index: int,
                       ) -> dict[str, tuple[bool, bool, dict[str, Any]]]:
        """Subject → (condition holds, it happened anew, what was seen), for every
        subject that holds or is firing."""
        kind = condition["type"]
        out: dict[str, tuple[bool, bool, dict[str, Any]]] = {}
        prefix = f"{rule.id}:{index}:"
        firing = {key[len(prefix):]: state for key, state in states.items()
                  if key.startswith(prefix) and state.firing}
        if kind == "source.rejections":
            wanted: list[str] = condition.get("sources") or []
            for row in await connection.fetch(_REJECTIONS, condition["window_seconds"], wanted):
                count = int(row["n"])
                if count > condition["above"] or row["slug"] in firing:
                    out[row["slug"]] = (count > condition["above"], False, {"count": count})
            for subject in firing:
                out.setdefault(subject, (False, False, {"count": 0}))
            return out
        narrowed = set(condition.get("endpoints") or ())
        chosen = [e for e in endpoints if not narrowed or e.id in narrowed]
        if kind == "endpoint.failure_rate":
            sums = await sums_by_endpoint(connection, *failure_window(
                datetime.now(UTC), condition["window_seconds"]))
            for endpoint in chosen:
                totals = sums.get(endpoint.id, Totals())
                attempts, failures = totals.attempts, totals.failures
                rate = failures / attempts if attempts else 0.0
                active = attempts >= condition["min_attempts"] and rate > condition["above"]
                if active or endpoint.id in firing:
                    out[endpoint.id] = (active, False, {"attempts": attempts,
                                                        "failures": failures, "rate": rate})
        for endpoint in chosen:
            if kind == "endpoint.disabled":
                active = not endpoint.enabled and not disabled_by_hand(endpoint.disabled_reason)
                seen: dict[str, Any] = {"reason": endpoint.disabled_reason}
                again = False
            elif kind == "endpoint.circuit_opened":
                active = endpoint.circuit_opened_at is not None
                seen, again = {"failures": endpoint.consecutive_failures}, False
            elif kind == "delivery.failed":
                noted = failed.get(endpoint.id)
                state = firing.get(endpoint.id)
                recovered = (state is not None and endpoint.last_success_at is not None
                             and state.last_fired_at is not None
                             and endpoint.last_success_at > state.last_fired_at)
                again = noted is not None
                active = again or (state is not None and not recovered)
                seen = noted or {}
            else:
                continue
            if active or endpoint.id in firing:
                out[endpoint.id] = (active, again, seen)
        for subject in firing:
            out.setdefault(subject, (False, False, {}))
        return out

    async def _apply(self, connection: asyncpg.Connection, rule: AlertRule, index: int,
                     condition: dict[str, Any], subject: str, seen: dict[str, Any],
                     active: bool, again: bool, now: datetime) -> str | None:
        """Decide again under the state row's lock; store the alert event and its
        deliveries with the new state. Returns the event id, or None (another dispatcher
        got there first)."""
        key = state_key(rule.id, index, subject)
        async with connection.transaction():
            await connection.execute(_ENSURE_STATE, key, rule.id, index, subject[:120])
            row = await connection.fetchrow(_LOCK_STATE, key)
            assert row is not None, "the state row was ensured in this transaction"
            decided: Transition | None = transition(
                StateView(row["firing"], row["last_fired_at"]), active, now, rule.cooldown,
                again=again)
            if decided is None:
                return None
            body_document = alert_body(alert_id=rule.id, alert_name=rule.name,
                                       condition=condition, subject=subject, observed=seen,
                                       state=decided, at=now)
            body = json.dumps(body_document, separators=(",", ":")).encode()
            event_id = new_id("evt")
            event_type = body_document["type"]
            await connection.execute(_INSERT_ALERT_EVENT, event_id, event_type, now,
                                     json.dumps({"content-type": "application/json"}),
                                     len(body), body)
            targets = [r["id"] for r in await connection.fetch(_LIVE_ENDPOINTS, rule.notify)]
            await queue.insert_deliveries(connection, [(event_id, t) for t in targets])
            await connection.execute(_WRITE_STATE, key, decided == "fire",
                                     now if decided == "fire" else None, event_id)
            if targets:
                await queue.notify_due(connection)
        publish({"type": "event.received", "event": {
            "id": event_id, "source": None, "event_type": event_type,
            "received_at": now.isoformat(), "size": len(body)}})
        log.info("alert %s %s for %s (%s)", rule.name, body_document["state"], subject,
                 event_type)
        return event_id

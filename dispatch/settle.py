"""Settling attempts: what an attempt means for its delivery (pure), and writing it down
(batched: many attempts and delivery updates per transaction).

Durable state is rescheduled in the database (`next_attempt_at`), never by sleeping in
the process. The endpoint's health (circuit breaker, failing-since, last success) is
updated in the same transaction under the endpoint row lock, so every dispatcher agrees,
and so are the rollups (dispatch/rollups.py): their rows are those of the endpoints the
transaction has locked first, so they add no lock order of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from dispatch.attempt_result import AttemptResult
from dispatch.metrics import record_attempt, record_delivery_final
from dispatch.notify.render import gone_reason
from dispatch.queue import (
    Claimed,
    Pinned,
    disable_endpoint,
    park_opened,
    planned_once,
    pooled,
)
from dispatch.retry import (
    CircuitState,
    after_attempt,
    auto_disable_reason,
    classify_response,
    next_attempt_delay,
    parse_retry_after,
    should_auto_disable,
)
from dispatch.rollups import COUNT_ATTEMPTS, TOTAL_KEYS, AttemptFacts, count_attempts_args
from dispatch.states import DELIVERING, FAILED, RETRYING, SUCCEEDED
from kernel.bus import publish
from kernel.ids import new_id
from kernel.logs import log_attempt

log = logging.getLogger("relay.dispatch")

GONE_REASON = "the endpoint answered 410 Gone"


@dataclass(slots=True)
class Settlement:
    job: Claimed
    result: AttemptResult
    status: str
    """succeeded, retrying or failed."""
    next_attempt_at: datetime | None
    completed_at: datetime | None
    success: bool
    gone: bool
    probe: bool = False
    disable_reason: str | None = None
    """Why the endpoint is disabled if this attempt ends the delivery as failed (a deleted
    chat webhook)."""
    applied: bool = field(default=False)
    """Set once written: False when the lease was lost (another dispatcher took over)."""
    resting: bool = field(default=False)
    """Set once written: the endpoint's circuit is open after the batch, or the batch
    disabled it (its waiting deliveries are parked)."""


def decide(job: Claimed, result: AttemptResult, schedule: Sequence[float], now: datetime,
           rng: random.Random, kind: str = "webhook") -> Settlement:
    """The delivery's next state after one attempt to an endpoint of `kind`."""
    outcome = classify_response(result.status_code) if result.status_code is not None else "retry"
    if outcome == "succeeded":
        return Settlement(job, result, SUCCEEDED, None, now, success=True, gone=False)
    gone = outcome == "gone" and kind != "email"
    if result.permanent:
        return Settlement(job, result, FAILED, None, now, success=False, gone=gone)
    retry_after = None
    if result.response_headers:
        retry_after = parse_retry_after(result.response_headers.get("retry-after"), now)
    if retry_after is None:
        retry_after = result.retry_after
    delay = next_attempt_delay(list(schedule), job.attempt - job.retry_base, retry_after, rng)
    if delay is None:
        return Settlement(job, result, FAILED, None, now, success=False, gone=gone,
                          disable_reason=gone_reason(kind, result.status_code))
    return Settlement(job, result, RETRYING, now + timedelta(seconds=delay), None,
                      success=False, gone=gone)


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL."""
    return value.replace("\x00", "\ufffd") if value else value


_INSERT_ATTEMPTS = """
INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms, status_code,
                     error, error_detail, request_headers, response_headers, response_body)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[],
                     $6::float8[], $7::int[], $8::text[], $9::text[], $10::jsonb[],
                     $11::jsonb[], $12::text[])
"""

_UPDATE_DELIVERIES = f"""
UPDATE delivery d
SET status = v.status, attempts_count = v.attempt, next_attempt_at = v.next_at,
    last_status_code = v.status_code, last_error = v.error, completed_at = v.completed_at,
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::int[], $7::text[],
            $8::timestamptz[]) AS v(id, status, attempt, next_at, status_code, error, completed_at)
WHERE d.id = v.id AND d.id = ANY($2::text[]) AND d.lease_owner = $1
  AND d.status = '{DELIVERING}'
RETURNING d.id
"""  # noqa: S608 - constants only; values are bound
"""`d.id = ANY($2)` repeats the join for the planner: the generic plan (GENERIC_PLAN) cannot
know how many rows `unnest` gives, and without it read every delivery in flight to join
them; with it, it probes the primary key of the partitions those ids fall in."""

_LOCK_HEALTH = """
SELECT id, enabled, circuit_opened_at, consecutive_failures, first_failure_at, last_success_at,
       circuit_parked
FROM endpoint WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""

_UPDATE_HEALTH = """
UPDATE endpoint e
SET circuit_opened_at = v.opened_at, consecutive_failures = v.failures,
    first_failure_at = v.first_failure_at, last_success_at = v.last_success_at,
    circuit_probe_at = CASE WHEN v.opened_at IS NULL THEN NULL ELSE e.circuit_probe_at END,
    circuit_parked = e.circuit_parked OR e.circuit_opened_at IS NOT NULL
                     OR v.opened_at IS NOT NULL
FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::timestamptz[], $5::timestamptz[])
     AS v(id, opened_at, failures, first_failure_at, last_success_at)
WHERE e.id = v.id
"""
"""`circuit_parked` is set by any batch that finds or leaves the circuit open: from then on
the endpoint's waiting deliveries are parked while it is open (dispatch.queue.park_opened)
and made due again once it has closed (dispatch.queue.circuit_upkeep), whoever opened it."""


def _shifted(sql: str, by: int) -> str:
    """`sql` with its parameters $n renumbered $(n + by)."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + by}", sql)


_WRITE = f"""
WITH settled AS ({_UPDATE_DELIVERIES}), health AS ({_shifted(_UPDATE_HEALTH, 8)}),
counted AS ({_shifted(COUNT_ATTEMPTS, 13)})
SELECT id FROM settled
"""  # noqa: S608 - composed from constant statements
"""What a batch changes under the endpoint locks, in one statement (one round trip while
they are held): the deliveries ($1-$8, `_UPDATE_DELIVERIES`, returning the ids whose
lease still held), the endpoints' health ($9-$13, `_UPDATE_HEALTH`) and the rollups
($14-$21, dispatch.rollups.COUNT_ATTEMPTS). Each CTE writes a table of its own."""


@dataclass(slots=True)
class _Health:
    enabled: bool
    circuit: CircuitState
    first_failure_at: datetime | None
    last_success_at: datetime | None
    parked: bool = False
    """The backlog was parked already (`circuit_parked`: the circuit was open before)."""
    opened: datetime | None = None
    disable_reason: str | None = None


def headers_json(headers: dict[str, str]) -> str:
    """An attempt's headers as JSON text, with orjson (a few times quicker than `json`, and
    two of these per attempt); `json` for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(headers).decode()
    except orjson.JSONEncodeError:
        return json.dumps(headers)


def _attempt_columns(batch: Sequence[Settlement]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(12)]
    for item in batch:
        result = item.result
        row = (
            new_id("att"), item.job.id, item.job.endpoint_id, item.job.attempt,
            result.started_at, result.duration_ms, result.status_code, result.error,
            _text(result.error_detail), headers_json(result.request_headers),
            headers_json(result.response_headers or {}), _text(result.response_body) or "",
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


class SettleWriter:
    """Collects settlements and writes them in batches (every `linger` seconds or
    `max_batch` items), then publishes them on the live bus.

    Settling is off a delivery's path: its slot and its endpoint's gate are free before
    the result is written. Waiting `linger` only delays what the log and the dashboard
    show, and a batch costs the same few round trips (and the endpoint locks) whatever
    its size, so a longer wait makes fewer, larger batches when deliveries trickle in
    rather than arrive in bursts."""

    def __init__(self, owner: str, *, circuit_threshold: int,
                 on_written: Callable[[list[Settlement]], None] | None = None,
                 max_batch: int = 200, linger: float = 0.025, pin: bool = False) -> None:
        self.owner = owner
        self.pin = pin
        self.home = Pinned(keep=False)
        """The connection batches are written on: kept (`pin`) while `run` runs."""
        self.circuit_threshold = circuit_threshold
        self.on_written = on_written
        self.max_batch = max_batch
        self.linger = linger
        self._items: list[Settlement] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._parking: set[asyncio.Task[None]] = set()
        self.total_key = random.choice(TOTAL_KEYS)
        """This writer's all-endpoint rollup rows (dispatch/rollups.py)."""

    def add(self, item: Settlement) -> None:
        self._items.append(item)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        self.home = Pinned(self.pin)
        try:
            await self._write_batches()
        finally:
            home, self.home = self.home, Pinned(keep=False)
            await home.release()

    async def _write_batches(self) -> None:
        failing = False
        while True:
            await self._ready.wait()
            if len(self._items) < self.max_batch:
                await asyncio.sleep(self.linger)
            batch, self._items = self._items[:self.max_batch], self._items[self.max_batch:]
            if not self._items:
                self._ready.clear()
            try:
                await self.write(batch)
                if failing:
                    log.info("dispatcher: settling attempts again")
                    failing = False
            except Exception as exc:  # noqa: BLE001 - keep the results and try again
                self._items[:0] = batch
                self._ready.set()
                if not failing:
                    log.warning("dispatcher: cannot record attempts (%s); retrying", exc)
                    failing = True
                await asyncio.sleep(1.0)
                continue
            if not self._items:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until everything added so far is written."""
        await self._idle.wait()

    async def write(self, batch: list[Settlement]) -> None:
        if not batch:
            return
        disabled: dict[str, str] = {}
        async with self.home.connection() as connection, planned_once(connection):
            # The attempts are new rows and lock nothing: written before the endpoint
            # rows are locked, so other dispatchers settling the same endpoints wait less.
            await connection.execute(_INSERT_ATTEMPTS, *_attempt_columns(batch))
            health = await self._lock_health(connection, batch)
            for item in batch:
                state = health.get(item.job.endpoint_id)
                if state is not None and state.circuit.opened_at is not None:
                    item.next_attempt_at = None  # parked until the circuit closes
            ids = list(health)
            applied = {row["id"] for row in await connection.fetch(
                _WRITE, self.owner,
                [item.job.id for item in batch], [item.status for item in batch],
                [item.job.attempt for item in batch], [item.next_attempt_at for item in batch],
                [item.result.status_code for item in batch],
                [item.result.error for item in batch], [item.completed_at for item in batch],
                ids, [health[i].circuit.opened_at for i in ids],
                [health[i].circuit.consecutive_failures for i in ids],
                [health[i].first_failure_at for i in ids],
                [health[i].last_success_at for i in ids],
                *count_attempts_args([
                    AttemptFacts(item.job.endpoint_id, item.result.started_at,
                                 item.result.status_code, item.result.duration_ms)
                    for item in batch], self.total_key),
            )}
            for item in batch:
                item.applied = item.job.id in applied
                state = health.get(item.job.endpoint_id)
                item.resting = state is not None and (
                    state.circuit.opened_at is not None or state.disable_reason is not None)
            for endpoint_id, state in health.items():
                if state.disable_reason and await disable_endpoint(
                        connection, endpoint_id, state.disable_reason):
                    disabled[endpoint_id] = state.disable_reason
        # After the commit, beside the next batches: results are not kept waiting (nor
        # their rows locked) while an opened circuit's backlog is parked.
        opened = [endpoint_id for endpoint_id, state in health.items()
                  if state.opened is not None and not state.parked]
        if opened:
            task = asyncio.get_running_loop().create_task(self._park(opened))
            self._parking.add(task)
            task.add_done_callback(self._parking.discard)
        self._publish(batch, disabled)
        if self.on_written is not None:
            self.on_written(batch)

    async def _park(self, opened: list[str]) -> None:
        """Park the backlogs of endpoints whose circuit just opened. A failure here must
        not send the (committed) batch round again: it is logged, and the deliveries left
        due are parked one by one by the claim's circuit check instead."""
        try:
            async with pooled() as connection:
                for endpoint_id in opened:
                    await park_opened(connection, endpoint_id)
        except Exception as exc:  # noqa: BLE001 - an optimisation; the claim checks anyway
            log.warning("dispatcher: could not park the deliveries of %s after its circuit "
                        "opened (%s); they are parked as they come due", ", ".join(opened),
                        exc)

    async def _lock_health(self, connection: asyncpg.Connection,
                           batch: list[Settlement]) -> dict[str, _Health]:
        """Lock the batch's endpoints (in id order) and work out their health after it."""
        rows = await connection.fetch(_LOCK_HEALTH, sorted({i.job.endpoint_id for i in batch}))
        health = {
            row["id"]: _Health(
                enabled=row["enabled"],
                circuit=CircuitState(row["circuit_opened_at"], row["consecutive_failures"]),
                first_failure_at=row["first_failure_at"], last_success_at=row["last_success_at"],
                parked=row["circuit_parked"],
            )
            for row in rows
        }
        self._apply(batch, health)
        return health

    def _apply(self, batch: list[Settlement], health: dict[str, _Health]) -> None:
        """Each attempt's effect on its endpoint: circuit, failing-since, disabling."""
        for item in batch:
            state = health.get(item.job.endpoint_id)
            if state is None:
                continue
            now = item.result.started_at
            before = state.circuit.opened_at
            state.circuit = after_attempt(state.circuit, item.success, now,
                                          self.circuit_threshold)
            if state.circuit.opened_at is not None and state.circuit.opened_at != before:
                state.opened = state.circuit.opened_at
            if item.success:
                state.last_success_at, state.first_failure_at = now, None
                state.opened = None
                continue
            state.first_failure_at = state.first_failure_at or now
            if not state.enabled:
                continue
            if item.gone:
                state.disable_reason = GONE_REASON
            elif item.disable_reason is not None:
                state.disable_reason = item.disable_reason
            elif should_auto_disable(state.first_failure_at, state.last_success_at, now):
                state.disable_reason = auto_disable_reason()

    def _publish(self, batch: list[Settlement], disabled: dict[str, str]) -> None:
        """Tell the live bus, the metrics and the attempt log what was written."""
        for item in batch:
            message = delivery_message(item)
            publish({"type": "delivery.attempted", "delivery": message})
            _record(item)
            if item.applied and item.status in (SUCCEEDED, FAILED):
                publish({"type": f"delivery.{item.status}", "delivery": message})
                record_delivery_final(item.job.endpoint_id, item.status)
        for endpoint_id, reason in disabled.items():
            publish({"type": "endpoint.disabled",
                     "endpoint": {"id": endpoint_id, "disabled_reason": reason}})


def _record(item: Settlement) -> None:
    result = item.result
    if result.error is not None:
        outcome = result.error
    else:
        outcome = "success" if item.success else "http_error"
    record_attempt(item.job.endpoint_id, outcome, result.duration_ms / 1000)
    log_attempt(
        delivery_id=item.job.id, event_id=item.job.event_id, endpoint_id=item.job.endpoint_id,
        attempt=item.job.attempt, status_code=result.status_code, error=result.error,
        duration_ms=result.duration_ms, outcome="gone" if item.gone else item.status,
        next_attempt_at=item.next_attempt_at if item.applied else None,
    )


def delivery_message(item: Settlement) -> dict[str, Any]:
    next_at = item.next_attempt_at
    if item.gone or (next_at is not None and not item.applied):
        next_at = None
    return {
        "id": item.job.id, "event_id": item.job.event_id, "endpoint_id": item.job.endpoint_id,
        "status": item.status, "attempt": item.job.attempt,
        "status_code": item.result.status_code, "duration_ms": item.result.duration_ms,
        "error": item.result.error,
        "next_attempt_at": next_at.isoformat() if next_at is not None else None,
    }

"""Endpoints of kind `cli`: their deliveries are pulled by a connected `relay listen`
instead of being sent by a dispatcher.

The CLI takes one delivery at a time, oldest event first, under the same lease a
dispatcher would hold; the signed request is built here (so the attempt records exactly
what the CLI forwards), and the CLI's report of the local answer is settled through the
dispatcher's settle path: retries, circuit breaker, attempt log and live messages behave
as for any endpoint. A delivery handed out and never reported goes back to the queue,
when the connection closes or, if the server process died, when its lease expires.

Deliveries of a `cli` endpoint wait parked (`next_attempt_at` NULL, out of the due index)
rather than due: no `relay listen` may connect for days, and every dispatcher's claim
would walk past the backlog. The pull takes parked rows as due while the endpoint is
enabled; only a retry waits in the due index for its time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from django.conf import settings

from dispatch import actions, queue
from dispatch.endpoints import TARGET_COLUMNS, Target, target_from_row
from dispatch.models import Endpoint
from dispatch.queue import Claimed, PutBack, pooled
from dispatch.retry import CIRCUIT_FAILURE_THRESHOLD
from dispatch.sender import AttemptResult, request_headers
from dispatch.settle import Settlement, SettleWriter, decide
from dispatch.states import DELIVERING, WAITING_SQL
from dispatch.wakeup import Listener
from kernel.crypto import encrypt_secret, new_signing_secret
from kernel.database import connection_params, database_url
from kernel.ids import new_id

log = logging.getLogger("relay.dispatch")

CLI_KIND = "cli"
BODY_LIMIT = 8 * 1024
ERROR_KINDS = ("timeout", "connect", "dns", "tls", "protocol")
"""The error kinds a CLI may report for its local target."""
MAX_DURATION_MS = 24 * 3600 * 1000.0

_CLAIM_ONE = f"""
WITH due AS (
    SELECT id FROM delivery
    WHERE endpoint_id = $2 AND status IN {WAITING_SQL}
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
      AND (SELECT enabled FROM endpoint WHERE id = $2)
    ORDER BY event_id, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE delivery d
    SET status = '{DELIVERING}', lease_owner = $1,
        lease_expires_at = now() + make_interval(secs => $3)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts_count, d.retry_base,
              d.next_attempt_at
)
SELECT c.id, c.event_id, c.endpoint_id, c.attempts_count, c.retry_base, c.next_attempt_at,
       e.enabled, e.updated_at AS endpoint_updated_at, e.circuit_opened_at,
       e.consecutive_failures, e.circuit_probe_at,
       ev.id IS NOT NULL AS event_exists, ev.body, ev.headers, ev.content_type,
       ev.event_type, ev.source_slug, ev.method
FROM claimed c
JOIN endpoint e ON e.id = c.endpoint_id
LEFT JOIN event ev ON ev.id = c.event_id
"""  # noqa: S608 - constant SQL text
"""The endpoint's oldest due delivery (by event: the order the events were received),
leased to `owner`."""

_TARGET = (
    f"SELECT {TARGET_COLUMNS} FROM endpoint"  # noqa: S608 - constant column list
    " WHERE id = $1 AND kind = 'cli' AND deleted_at IS NULL"
)


_NEXT_DUE = f"""
SELECT min(next_attempt_at) FROM delivery
WHERE endpoint_id = $1 AND status IN {WAITING_SQL}
"""  # noqa: S608 - constant SQL text


class ListenError(Exception):
    """A report or a registration that cannot be accepted; `str()` says why."""


@dataclass(slots=True)
class Handout:
    """A delivery handed to a CLI and not reported yet."""

    job: Claimed
    target: Target
    method: str
    headers: dict[str, str]


# --- registering -----------------------------------------------------------------------------


async def find_listener(name: str) -> Endpoint | None:
    return await Endpoint.filter(kind=CLI_KIND, description=name,
                                 deleted_at=None).order_by("id").first()


async def register(name: str, forward_to: str, sources: list[str],
                   event_types: list[str]) -> tuple[Endpoint, bool]:
    """The `cli` endpoint called `name`, created or resumed (its filters and target
    updated, enabled again); returns it and whether it was created."""
    row = await find_listener(name)
    if row is None:
        row = await Endpoint.create(
            id=new_id("ep"), kind=CLI_KIND, url=forward_to, description=name,
            secret_encrypted=encrypt_secret(new_signing_secret()), event_types=event_types,
            sources=sources, max_in_flight=1,
        )
        return row, True
    row.url, row.sources, row.event_types = forward_to, sources, event_types
    row.updated_at = datetime.now(UTC)
    await row.save(update_fields=["url", "sources", "event_types", "updated_at"])
    if not row.enabled:
        await actions.set_endpoint_enabled(row.id, True)
        await row.refresh_from_db()
    return row, False


def new_listener_name() -> str:
    return f"listen-{secrets.token_hex(3)}"


# --- handing out, settling -------------------------------------------------------------------


async def load_target(connection: asyncpg.Connection, endpoint_id: str) -> Target | None:
    row = await connection.fetchrow(_TARGET, endpoint_id)
    return target_from_row(row) if row is not None else None


def lease_seconds(target: Target) -> float:
    return float(target.timeout + settings.RELAY_LEASE_SECONDS)


def _claimed(row: Mapping[str, Any]) -> Claimed:
    return Claimed(
        id=row["id"], event_id=row["event_id"], endpoint_id=row["endpoint_id"],
        attempt=row["attempts_count"] + 1, retry_base=row["retry_base"],
        due_at=row["next_attempt_at"], endpoint_exists=True,
        endpoint_enabled=bool(row["enabled"]), endpoint_updated_at=row["endpoint_updated_at"],
        circuit_opened_at=row["circuit_opened_at"],
        consecutive_failures=row["consecutive_failures"] or 0,
        circuit_probe_at=row["circuit_probe_at"], event_exists=bool(row["event_exists"]),
        body=bytes(row["body"] or b""),
        headers=json.loads(row["headers"]) if row["headers"] else {},
        content_type=row["content_type"] or "", event_type=row["event_type"],
        source_slug=row["source_slug"],
    )


class EndpointGone(Exception):
    """The `cli` endpoint was deleted."""


async def hand_out(endpoint_id: str, owner: str) -> Handout | datetime | None:
    """Lease the endpoint's next due delivery to `owner`, with the signed request the CLI
    forwards; when nothing is due, when the next delivery falls due (None: none waits).
    Raises EndpointGone when the endpoint was deleted."""
    async with pooled() as connection:
        while True:
            target = await load_target(connection, endpoint_id)
            if target is None:
                raise EndpointGone(endpoint_id)
            row = await connection.fetchrow(_CLAIM_ONE, owner, endpoint_id,
                                            lease_seconds(target))
            if row is None:
                next_due: datetime | None = await connection.fetchval(_NEXT_DUE, endpoint_id)
                return next_due
            job = _claimed(row)
            if not job.event_exists:
                await queue.finish_unattempted(connection, owner, [job.id], "failed",
                                               "event_missing")
                continue
            now = datetime.now(UTC)
            headers = request_headers(job, target, now, settings.VERSION)
            return Handout(job, target, row["method"] or "POST", headers)


def delivery_message(handout: Handout) -> dict[str, Any]:
    """What the CLI is sent: forward `body` to your target with `method` and `headers`."""
    job = handout.job
    return {
        "type": "delivery", "delivery_id": job.id, "event_id": job.event_id,
        "event_type": job.event_type, "source": job.source_slug, "attempt": job.attempt,
        "method": handout.method, "headers": handout.headers,
        "body": base64.b64encode(job.body).decode("ascii"),
        "timeout_seconds": handout.target.timeout,
    }


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ListenError(f"{name}: an object of strings")
    return {k.lower(): v for k, v in value.items()}


def attempt_result(handout: Handout, report: Mapping[str, Any],
                   started_at: datetime) -> AttemptResult:
    """The attempt a CLI reported (`{"status_code", "headers", "body", "duration_ms",
    "error", "error_detail"}`), checked: a malformed report raises ListenError."""
    status = report.get("status_code")
    error = report.get("error")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)
                               or not 100 <= status <= 599):
        raise ListenError("status_code: an HTTP status between 100 and 599, or null")
    if error is not None and error not in ERROR_KINDS:
        raise ListenError(f"error: one of {', '.join(ERROR_KINDS)}, or null")
    if (status is None) == (error is None):
        raise ListenError("give exactly one of status_code and error")
    duration = report.get("duration_ms", 0.0)
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        raise ListenError("duration_ms: a number of milliseconds")
    body = report.get("body", "")
    detail = report.get("error_detail")
    if not isinstance(body, str) or (detail is not None and not isinstance(detail, str)):
        raise ListenError("body and error_detail: text")
    return AttemptResult(
        started_at=started_at, duration_ms=round(min(float(duration), MAX_DURATION_MS), 3),
        request_headers=handout.headers, status_code=status,
        response_headers=_string_map(report.get("headers"), "headers") if status else None,
        response_body=body.encode("utf-8", "replace")[:BODY_LIMIT].decode("utf-8", "ignore"),
        error=error, error_detail=detail[:1000] if detail else None,
    )


def new_settler(owner: str) -> SettleWriter:
    return SettleWriter(owner, circuit_threshold=CIRCUIT_FAILURE_THRESHOLD)


async def settle(settler: SettleWriter, handout: Handout, result: AttemptResult,
                 rng: random.Random) -> Settlement:
    """Record the attempt and move the delivery on, as the dispatcher does."""
    settlement = decide(handout.job, result, handout.target.retry_schedule,
                        datetime.now(UTC), rng)
    await settler.write([settlement])
    return settlement


async def give_back(owner: str, handout: Handout) -> None:
    """Return an unreported delivery to the queue, unattempted: parked, so the next pull
    takes it first."""
    async with pooled() as connection:
        await queue.put_back(connection, owner, [
            PutBack(handout.job.id, handout.job.endpoint_id, None)])


def new_owner() -> str:
    return f"cli-{secrets.token_hex(6)}"


# --- wake-ups --------------------------------------------------------------------------------


class DueWatch:
    """One LISTEN connection per web process for every connected CLI: a `NOTIFY` on the
    due channel (deliveries routed, retried, recovered) wakes them all. Started with the
    first CLI, stopped with the last."""

    def __init__(self) -> None:
        self._waiters: set[Callable[[], None]] = set()
        self._task: asyncio.Task[None] | None = None

    def _wake(self) -> None:
        for wake in list(self._waiters):
            wake()

    def add(self, wake: Callable[[], None]) -> None:
        self._waiters.add(wake)
        if self._task is None or self._task.done():
            listener = Listener(connection_params(database_url()),
                                {queue.DUE_CHANNEL: self._wake})
            self._task = asyncio.get_running_loop().create_task(listener.run(),
                                                                name="cli-due-listen")

    async def remove(self, wake: Callable[[], None]) -> None:
        self._waiters.discard(wake)
        if not self._waiters and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


due_watch = DueWatch()

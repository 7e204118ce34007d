"""The durable delivery queue: every statement that moves a delivery between states.

A delivery is due when its status is `pending` or `retrying` and `next_attempt_at` has
passed (partial index `delivery_due_idx`). Dispatchers claim due deliveries in batches
with `FOR UPDATE SKIP LOCKED` and a lease; a lease that expires (the process died) is
swept back to due. Deliveries of `cli` endpoints are never claimed here: a connected
`relay listen` pulls them (dispatch.cli), under the same leases; they wait parked, out
of the due index, so a listener away for days costs the claims nothing. Deliveries of a disabled
endpoint are parked (`next_attempt_at` NULL,
status kept) so they never clog the claim, and made due again when it is enabled.

Statements that change both an endpoint and its deliveries lock the endpoint row first,
then the deliveries: the same order everywhere, so they cannot deadlock each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from tortoise import connections

from dispatch.retry import CIRCUIT_COOLDOWN_SECONDS
from dispatch.states import (
    ACTIVE_SQL,
    CANCELLED,
    DELIVERING,
    FAILED,
    PENDING,
    RETRYING,
    WAITING_SQL,
)
from kernel.database import KEPT_PLAN_SETTINGS, set_local
from kernel.ids import new_id

DUE_CHANNEL = "relay_due"
"""`NOTIFY` channel: deliveries became due (routed, retried, recovered, endpoint enabled)."""


def pooled() -> Any:
    """A raw asyncpg connection from Tortoise's pool (`async with pooled() as connection`)."""
    return connections.get("default").acquire_connection()


PINNED_LOOPS = 4
"""Loops of a dispatcher that keep a connection (`Pinned`): two claimers, the settle
writer, the router."""


def pinning_fits(pool_size: int) -> bool:
    """Whether a pool of `pool_size` leaves room for the pinned loops and two more
    connections for everything else; with a smaller pool every loop borrows per use."""
    return pool_size >= PINNED_LOOPS + 2


def _lost(connection: asyncpg.Connection) -> bool:
    """Closed, or handed back to the pool behind our back (asyncpg does that when the
    server ends the session)."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        return True


class Pinned:
    """One pooled connection kept by a loop that runs its statements one after another
    (a claimer, the settle writer, the router), between those statements too.

    Each connection plans a hot statement once, on its first run (a generic plan over
    every partition of `delivery` and `event`: milliseconds of the server's CPU, and its
    memory for as long as the connection lives). Borrowed per statement, every connection
    of the pool ends up planning and keeping every hot statement; kept, each is planned
    by the loop that runs it. A statement that fails gives the connection back (it may be
    broken); the next use takes one from the pool again. The loop that owns it calls
    `release()` when it ends, before the pool is closed (a kept connection holds
    `Pool.close()` up). Without room in the pool (`pinning_fits`) it borrows per use.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self._holder: Any = None
        self._connection: asyncpg.Connection | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        if not self.keep:
            async with pooled() as connection:
                yield connection
            return
        if self._connection is not None and _lost(self._connection):
            await self.release()
        if self._connection is None:
            holder = pooled()
            self._connection = await holder.__aenter__()
            self._holder = holder
        try:
            yield self._connection
        except BaseException:
            await self.release()
            raise

    async def release(self) -> None:
        holder, self._holder, self._connection = self._holder, None, None
        if holder is not None:
            with contextlib.suppress(Exception):
                await holder.__aexit__(None, None, None)


GENERIC_PLAN = set_local(KEPT_PLAN_SETTINGS)
"""Run first in a transaction whose hot statements read partitioned tables
(kernel.database.KEPT_PLAN_SETTINGS).

PostgreSQL keeps making a custom plan per call when a `LIMIT $n` makes the generic plan
look dearer. The generic plan of these statements is the custom one (index walks, run-time
pruning on ids): only the planning goes. Scoped to the transaction: other statements on
the pooled connection keep the default choice."""


IN_DUE_ORDER = (GENERIC_PLAN + "; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
                "; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
"""GENERIC_PLAN for the claims: their plan walks `delivery_due_idx` in due order, stops
at the limit and reaches every other row by index, whatever the statistics say.

A day partition that autovacuum has not analyzed yet (every new database, every day's
first minute) looks almost empty to the planner, which then prefers a bitmap scan of every
open delivery and a sort: tens of milliseconds a claim once thousands are open, kept for
as long as the connection keeps the plan. Without sorts, bitmaps, hash and merge joins the
only plan left is the ordered walk (a merge of each partition's index) with nested loops,
which is also what the statistics choose once they exist. The window sort of a claim
within allowances stays (it has no alternative: the settings only make it look dear), and
JIT is off, since a plan that looks that dear would otherwise be compiled on each call."""


@asynccontextmanager
async def planned_once(connection: asyncpg.Connection,
                       settings: str = GENERIC_PLAN) -> AsyncIterator[None]:
    """A transaction whose statements run on their generic plans (GENERIC_PLAN, or
    `settings` that include it).

    `BEGIN` and the settings go in one round trip (the simple protocol takes both), so a
    claim costs one round trip more than a bare statement, not two. Inside a transaction
    already open, only the settings are made (they last until that transaction ends)."""
    if connection.is_in_transaction():
        await connection.execute(settings)
        yield
        return
    await connection.execute("BEGIN; " + settings)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection: the pool discards it
            await connection.execute("ROLLBACK")
        raise
    await connection.execute("COMMIT")


async def notify_due(connection: asyncpg.Connection) -> None:
    await connection.execute(f"SELECT pg_notify('{DUE_CHANNEL}', '')")


# --- claim ---------------------------------------------------------------------------------

_LEASE_AND_READ = f""", claimed AS (
    UPDATE delivery d
    SET status = '{DELIVERING}', lease_owner = $1,
        lease_expires_at = now() + make_interval(secs => coalesce(
            (SELECT e.timeout_seconds FROM endpoint e WHERE e.id = d.endpoint_id), $4) + $5)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts_count, d.retry_base,
              d.next_attempt_at
)
SELECT c.id, c.event_id, c.endpoint_id, c.attempts_count, c.retry_base, c.next_attempt_at,
       e.id IS NOT NULL AND e.deleted_at IS NULL AS endpoint_exists,
       e.enabled, e.updated_at AS endpoint_updated_at,
       e.circuit_opened_at, e.consecutive_failures, e.circuit_probe_at,
       ev.id IS NOT NULL AS event_exists, ev.body, ev.headers, ev.content_type,
       ev.event_type, ev.source_slug, ev.received_at, later.next_due
FROM (SELECT min(next_attempt_at) AS next_due FROM delivery
      WHERE status IN {WAITING_SQL} AND next_attempt_at > now()) AS later
LEFT JOIN (claimed c
           LEFT JOIN endpoint e ON e.id = c.endpoint_id
           LEFT JOIN event ev ON ev.id = c.event_id) ON true
"""  # noqa: S608 - constants only; values are bound
"""The leased rows with what sending them needs, each carrying `next_due` (when the
earliest not-yet-due delivery becomes due); one row with `id` NULL when none was leased,
so the claim answers both questions in one round trip."""

def _circuit_closed(cooldown: str) -> str:
    """SQL: the delivery's endpoint is not resting its open circuit, nor waiting for the
    probe of its half-open one (`cooldown`: the parameter holding the cool-down).

    A scalar subquery, looked up per row the scan reaches: as `NOT EXISTS` the planner
    turned it into an anti-join over every due delivery, sorted, instead of walking the
    due index in order and stopping at the limit."""
    return f"""coalesce((
          SELECT e.circuit_opened_at IS NULL
              OR (e.circuit_opened_at <= now() - make_interval(secs => {cooldown})
                  AND NOT coalesce(e.circuit_probe_at >= e.circuit_opened_at
                                   AND e.circuit_probe_at > now() - make_interval(
                                       secs => coalesce(e.timeout_seconds, $4) + $5), false))
          FROM endpoint e WHERE e.id = delivery.endpoint_id), true)"""  # noqa: S608 - constant SQL text


_CLAIM = f"""
WITH due AS (
    SELECT id FROM delivery
    WHERE status IN {WAITING_SQL} AND next_attempt_at <= now()
      AND next_attempt_at >= coalesce($7::timestamptz, '-infinity')
      AND NOT (endpoint_id = ANY($3::text[]))
      AND endpoint_id NOT IN (SELECT id FROM endpoint WHERE kind = 'cli')
      AND """ + _circuit_closed("$6") + """
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)""" + _LEASE_AND_READ  # noqa: S608 - constant SQL text

_CLAIM_WITHIN_ALLOWANCES = f"""
WITH candidate AS (
    SELECT id, endpoint_id, next_attempt_at FROM delivery
    WHERE status IN {WAITING_SQL} AND next_attempt_at <= now()
      AND next_attempt_at >= coalesce($11::timestamptz, '-infinity')
      AND NOT (endpoint_id = ANY($3::text[]))
      AND endpoint_id NOT IN (SELECT id FROM endpoint WHERE kind = 'cli')
      AND """ + _circuit_closed("$10") + """
    ORDER BY next_attempt_at
    LIMIT $6
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT c.id, c.next_attempt_at,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.id)
               AS rank,
           coalesce(a.allowance, least(greatest(greatest(e.max_in_flight, 1) - $9, 0), $2))
               AS allowance
    FROM candidate c
    LEFT JOIN unnest($7::text[], $8::int[]) AS a(endpoint_id, allowance)
           ON a.endpoint_id = c.endpoint_id
    LEFT JOIN endpoint e ON e.id = c.endpoint_id
), due AS (
    SELECT id FROM ranked WHERE rank <= allowance ORDER BY next_attempt_at LIMIT $2
)""" + _LEASE_AND_READ  # noqa: S608 - constant SQL text
"""The claim when some endpoints can take fewer than `limit` rows: the oldest
`limit * CLAIM_SCAN_FACTOR` due deliveries no other claim holds are locked, and of each
endpoint's at most its allowance (given, else its `max_in_flight` less `reserved`) is
leased, so a claim does not lease rows the endpoint's gate would only hand back. The candidates are locked
with SKIP LOCKED (not only the rows picked from them): rows another dispatcher's claim is
leasing at that moment are passed over and the scan goes on past them, instead of being
picked, found locked and leaving the claim short. Candidates not leased are unlocked when
the statement ends."""

CLAIM_SCAN_FACTOR = 2
"""A claim within allowances looks at this many times `limit` due deliveries."""


@dataclass(slots=True)
class Claimed:
    """One claimed delivery with what sending it needs (a tuple-like row, no ORM object)."""

    id: str
    event_id: str
    endpoint_id: str
    attempt: int
    """The number of the attempt about to be made (1-based)."""
    retry_base: int
    due_at: datetime
    endpoint_exists: bool
    endpoint_enabled: bool
    endpoint_updated_at: datetime | None
    circuit_opened_at: datetime | None
    consecutive_failures: int
    circuit_probe_at: datetime | None
    event_exists: bool
    body: bytes
    headers: dict[str, str]
    content_type: str
    event_type: str | None
    source_slug: str | None
    received_at: datetime | None = None


async def claim(connection: asyncpg.Connection, owner: str, limit: int,
                exclude: Sequence[str], default_timeout: float,
                lease_margin: float,
                allowances: Mapping[str, int] | None = None, reserved: int = 0,
                circuit_cooldown: float = CIRCUIT_COOLDOWN_SECONDS,
                due_from: datetime | None = None,
                ) -> tuple[list[Claimed], datetime | None]:
    """Lease up to `limit` due deliveries (oldest due first), skipping `exclude` endpoints;
    returns them and when the earliest not-yet-due delivery becomes due (None: none).

    With `allowances` (endpoint id → rows it may take; an endpoint not in it may take its
    `max_in_flight` less `reserved`, what claims of this process still out may take of
    it), no endpoint gets more than its allowance, so a claim does not lease rows the
    endpoint's gate would only hand back. The lease lasts the endpoint's timeout
    plus `lease_margin` seconds. Deliveries of an endpoint whose circuit is open (or
    whose half-open circuit's probe is out) are left where they are, not leased and put
    back one by one.

    `due_from` leaves out deliveries due before it: the due time of the last row a
    full claim leased, where the next may start. Everything due earlier was leased or
    left out by that claim, and the rows it left out (endpoints excluded, rows other
    claims held) are walked again only by a claim without it (see `Dispatcher`).
    """
    async with planned_once(connection, IN_DUE_ORDER):
        if allowances is not None:
            ids = list(allowances)
            rows = await connection.fetch(
                _CLAIM_WITHIN_ALLOWANCES, owner, limit, list(exclude), default_timeout,
                lease_margin, limit * CLAIM_SCAN_FACTOR, ids, [allowances[i] for i in ids],
                reserved, circuit_cooldown, due_from)
        else:
            rows = await connection.fetch(_CLAIM, owner, limit, list(exclude),
                                          default_timeout, lease_margin, circuit_cooldown,
                                          due_from)
    next_due = rows[0]["next_due"] if rows else None
    return [claimed_from_row(row) for row in rows if row["id"] is not None], next_due


def claimed_from_row(row: asyncpg.Record) -> Claimed:
    """A leased delivery as the claim (or routing's hand-off) reads it: the columns of
    `_LEASE_AND_READ`."""
    return Claimed(
        id=row["id"], event_id=row["event_id"], endpoint_id=row["endpoint_id"],
        attempt=row["attempts_count"] + 1, retry_base=row["retry_base"],
        due_at=row["next_attempt_at"],
        endpoint_exists=bool(row["endpoint_exists"]), endpoint_enabled=bool(row["enabled"]),
        endpoint_updated_at=row["endpoint_updated_at"],
        circuit_opened_at=row["circuit_opened_at"],
        consecutive_failures=row["consecutive_failures"] or 0,
        circuit_probe_at=row["circuit_probe_at"],
        event_exists=bool(row["event_exists"]), body=bytes(row["body"] or b""),
        headers=orjson.loads(row["headers"]) if row["headers"] else {},
        content_type=row["content_type"] or "", event_type=row["event_type"],
        source_slug=row["source_slug"], received_at=row["received_at"],
    )


# --- giving claimed deliveries back without an attempt ------------------------------------

_LOCK_ENDPOINTS_SHARED = (
    "SELECT id FROM endpoint WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE"
)

_PUT_BACK = f"""
UPDATE delivery d
SET status = CASE WHEN d.attempts_count > 0 THEN '{RETRYING}' ELSE '{PENDING}' END,
    next_attempt_at = CASE WHEN v.park THEN (CASE WHEN e.enabled AND e.kind <> 'cli'
                                                       AND e.circuit_opened_at IS NULL
                                                  THEN now() END)
                           ELSE v.next_at END,
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($2::text[], $3::timestamptz[], $4::bool[]) AS v(id, next_at, park), endpoint e
WHERE d.id = v.id AND e.id = d.endpoint_id AND d.lease_owner = $1 AND d.status = '{DELIVERING}'
"""  # noqa: S608 - constants only; values are bound


@dataclass(frozen=True, slots=True)
class PutBack:
    delivery_id: str
    endpoint_id: str
    next_at: datetime | None
    """When it is due again; None parks it (its endpoint is disabled, or its circuit open)."""


async def put_back(connection: asyncpg.Connection, owner: str, items: Sequence[PutBack]) -> None:
    """Return claimed deliveries to the queue unattempted: due at `next_at`, or parked.

    A delivery parked while its endpoint is being enabled, or its circuit closed, is made
    due at once: the endpoint rows are locked first, so enable's unpark (or the settle
    that closes the circuit) and this statement are ordered.
    """
    if not items:
        return
    async with connection.transaction():
        await connection.execute(_LOCK_ENDPOINTS_SHARED,
                                 sorted({item.endpoint_id for item in items}))
        await connection.execute(
            _PUT_BACK, owner, [item.delivery_id for item in items],
            [item.next_at for item in items], [item.next_at is None for item in items],
        )


_FINISH_UNATTEMPTED = f"""
UPDATE delivery SET status = $3, last_error = $4, next_attempt_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, completed_at = now()
WHERE id = ANY($2::text[]) AND lease_owner = $1 AND status = '{DELIVERING}'
"""  # noqa: S608 - constants only; values are bound


async def finish_unattempted(connection: asyncpg.Connection, owner: str, ids: Sequence[str],
                             status: str, error: str | None) -> None:
    """Close claimed deliveries that cannot be sent: endpoint deleted, event purged."""
    if ids:
        await connection.execute(_FINISH_UNATTEMPTED, owner, list(ids), status, error)


# --- leases, timing --------------------------------------------------------------------------

_SWEEP = f"""
UPDATE delivery d SET status = '{RETRYING}', lease_owner = NULL, lease_expires_at = NULL,
    next_attempt_at = CASE WHEN (SELECT kind FROM endpoint e WHERE e.id = d.endpoint_id) = 'cli'
                           THEN NULL ELSE now() END
WHERE id = ANY(ARRAY(SELECT id FROM delivery
                   WHERE status = '{DELIVERING}' AND lease_expires_at < now()
                   ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))
"""  # noqa: S608 - constants only; values are bound
"""The expired leases' ids as an array, found by primary key (see `PARK_CHUNK`)."""


async def sweep_expired_leases(connection: asyncpg.Connection, limit: int = 1000) -> int:
    """Make deliveries whose dispatcher died (lease expired) due again; returns how many."""
    result = await connection.execute(_SWEEP, limit)
    return int(result.split()[-1])


# --- creating deliveries ----------------------------------------------------------------------

_INSERT_DELIVERIES = f"""
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at)
SELECT v.id, v.event_id, v.endpoint_id, '{PENDING}', 0, 0, now(), now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS v(id, event_id, endpoint_id)
"""  # noqa: S608 - constants only; values are bound


def new_delivery_ids(count: int) -> list[str]:
    return [new_id("dlv") for _ in range(count)]


async def insert_deliveries(connection: asyncpg.Connection,
                            pairs: Iterable[tuple[str, str]]) -> list[str]:
    """One pending delivery per (event id, endpoint id), due now; returns the new ids."""
    pairs = list(pairs)
    if not pairs:
        return []
    ids = new_delivery_ids(len(pairs))
    await connection.execute(_INSERT_DELIVERIES, ids, [event_id for event_id, _ in pairs],
                             [endpoint_id for _, endpoint_id in pairs])
    return ids


# --- endpoint-wide moves ----------------------------------------------------------------------

_DISABLE = """
UPDATE endpoint SET enabled = false, disabled_reason = $2, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND enabled
"""
_PARK = f"""
UPDATE delivery SET next_attempt_at = NULL
WHERE endpoint_id = $1 AND status IN {WAITING_SQL} AND next_attempt_at IS NOT NULL
"""  # noqa: S608 - constants only; values are bound
_ENABLE = """
UPDATE endpoint SET enabled = true, disabled_reason = NULL, updated_at = now(),
    circuit_opened_at = NULL, consecutive_failures = 0, circuit_probe_at = NULL,
    first_failure_at = NULL, circuit_parked = false
WHERE id = $1 AND deleted_at IS NULL
"""
_UNPARK = f"""
UPDATE delivery SET next_attempt_at = now()
WHERE endpoint_id = $1 AND status IN {WAITING_SQL} AND next_attempt_at IS NULL
  AND (SELECT kind FROM endpoint WHERE id = $1) <> 'cli'
"""  # noqa: S608 - constants only; values are bound
_DELETE = "UPDATE endpoint SET deleted_at = now(), enabled = false, updated_at = now() WHERE id = $1"
_CANCEL = f"""
UPDATE delivery SET status = '{CANCELLED}', next_attempt_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, completed_at = now()
WHERE endpoint_id = $1 AND status IN {ACTIVE_SQL}
"""  # noqa: S608 - constants only; values are bound
_PARK_CHUNK = f"""
UPDATE delivery SET next_attempt_at = NULL
WHERE id = ANY(ARRAY(SELECT id FROM delivery
                   WHERE endpoint_id = $1 AND id > $3 AND status IN {WAITING_SQL}
                     AND next_attempt_at IS NOT NULL
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
RETURNING id
"""  # noqa: S608 - constants only; values are bound
PARK_CHUNK = 1000
"""Deliveries parked per statement when a circuit opens: a backlog of 100,000 is parked in
short statements, never one long transaction that holds 100,000 row locks.

The chunk's ids are taken as an array (`id = ANY(ARRAY(...))`), so each partition finds
them through its primary key. As `id IN (SELECT ...)` the planner was free to hash-join
the chunk against a sequential scan of every partition, and did on tables of tens of
thousands of rows: each chunk of 1,000 read the whole table."""


def _count(result: str) -> int:
    return int(result.split()[-1])


async def _in_chunks(connection: asyncpg.Connection, statement: str, endpoint_id: str,
                     chunk: int) -> int:
    """Run `statement` (endpoint, chunk size, the last id done) until it changes fewer
    rows than a chunk; returns the rows changed. Each run is its own short transaction
    and starts after the last row of the one before (`delivery_endpoint_idx`), so a
    backlog of n rows costs n, not n² / chunk: rows already done are not read again."""
    changed, after = 0, ""
    while True:
        ids = [row["id"] for row in await connection.fetch(statement, endpoint_id, chunk, after)]
        changed += len(ids)
        if len(ids) < chunk:
            return changed
        after = max(ids)


async def disable_endpoint(connection: asyncpg.Connection, endpoint_id: str,
                           reason: str | None) -> bool:
    """Disable and park its open deliveries (in the caller's transaction). False if it
    was already disabled."""
    changed = _count(await connection.execute(_DISABLE, endpoint_id, reason))
    await connection.execute(_PARK, endpoint_id)
    return changed > 0


async def enable_endpoint(connection: asyncpg.Connection, endpoint_id: str) -> int:
    """Enable (circuit reset) and make its parked deliveries due; returns how many."""
    await connection.execute(_ENABLE, endpoint_id)
    unparked = _count(await connection.execute(_UNPARK, endpoint_id))
    await notify_due(connection)
    return unparked


async def delete_endpoint(connection: asyncpg.Connection, endpoint_id: str) -> int:
    """Soft-delete and cancel its deliveries that are not final; returns how many."""
    await connection.execute(_DELETE, endpoint_id)
    return _count(await connection.execute(_CANCEL, endpoint_id))


async def park_opened(connection: asyncpg.Connection, endpoint_id: str,
                      chunk: int = PARK_CHUNK) -> int:
    """Park the due backlog of an endpoint whose circuit just opened; returns how many.

    Parked deliveries are in no due index: claims never walk past them, and the circuit
    failing again later costs no row. One of them goes out as the probe when the circuit
    half-opens (`circuit_upkeep`), and all are due again once it closes. A delivery left
    due (locked by a claim at that moment) is parked by the claim's circuit check.
    """
    return await _in_chunks(connection, _PARK_CHUNK, endpoint_id, chunk)


_PROBE_CANDIDATE = f"""
UPDATE delivery SET next_attempt_at = now()
WHERE id IN (
    SELECT (SELECT d.id FROM delivery d
            WHERE d.endpoint_id = e.id AND d.status IN {WAITING_SQL}
              AND d.next_attempt_at IS NULL
            LIMIT 1)
    FROM endpoint e
    WHERE e.circuit_opened_at <= now() - make_interval(secs => $1)
      AND e.enabled AND e.deleted_at IS NULL AND e.kind <> 'cli'
      AND NOT coalesce(e.circuit_probe_at >= e.circuit_opened_at
                       AND e.circuit_probe_at > now() - make_interval(
                           secs => coalesce(e.timeout_seconds, $2) + $3), false))
RETURNING endpoint_id
"""  # noqa: S608 - constants only; values are bound
"""One parked delivery made due for each endpoint whose circuit is half-open and whose
probe is not out: the claim that takes it sends it as the probe."""

_STRANDED = """
SELECT id FROM endpoint
WHERE circuit_parked AND circuit_opened_at IS NULL AND enabled AND deleted_at IS NULL
ORDER BY id
"""
_UNPARK_CHUNK = f"""
UPDATE delivery SET next_attempt_at = now()
WHERE id = ANY(ARRAY(SELECT id FROM delivery
                   WHERE endpoint_id = $1 AND id > $3 AND status IN {WAITING_SQL}
                     AND next_attempt_at IS NULL
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
  AND (SELECT circuit_opened_at IS NULL AND enabled AND kind <> 'cli'
       FROM endpoint WHERE id = $1)
RETURNING id
"""  # noqa: S608 - constants only; values are bound
_UNPARKED = """
UPDATE endpoint SET circuit_parked = false
WHERE id = $1 AND circuit_opened_at IS NULL AND enabled
"""


async def circuit_upkeep(connection: asyncpg.Connection, cooldown: float, timeout: float,
                         lease_margin: float, chunk: int = PARK_CHUNK) -> tuple[int, int]:
    """What a parked circuit needs that no settle does: a probe candidate for each
    half-open endpoint, and, for each endpoint whose circuit has closed, its parked
    backlog due again (then `circuit_parked` cleared). Returns (candidates, unparked).
    Two reads of the endpoint table when there is nothing to do. The probe candidates'
    statement runs on its generic plan: it runs every second or so in each dispatcher, and
    planning it (over every partition of `delivery`) cost more than running it."""
    async with planned_once(connection):
        candidates = len(await connection.fetch(_PROBE_CANDIDATE, cooldown, timeout,
                                                lease_margin))
    unparked = 0
    for row in await connection.fetch(_STRANDED):
        unparked += await _in_chunks(connection, _UNPARK_CHUNK, row["id"], chunk)
        await connection.execute(_UNPARKED, row["id"])
    if candidates or unparked:
        await notify_due(connection)
    return candidates, unparked


_TAKE_PROBE = """
UPDATE endpoint SET circuit_probe_at = now()
WHERE id = $1 AND circuit_opened_at = $2
  AND (circuit_probe_at IS NULL OR circuit_probe_at < circuit_opened_at
       OR circuit_probe_at < now() - make_interval(secs => $3))
RETURNING id
"""


async def take_probe(connection: asyncpg.Connection, endpoint_id: str, opened_at: datetime,
                     probe_timeout: float) -> bool:
    """Claim the one probe of a half-open circuit (across every dispatcher).

    A probe not settled within `probe_timeout` seconds (its dispatcher died) may be taken
    again.
    """
    return await connection.fetchval(_TAKE_PROBE, endpoint_id, opened_at,
                                     probe_timeout) is not None


# --- by hand: retry, recover ------------------------------------------------------------------

_REQUEUE = f"""
UPDATE delivery d
SET status = '{PENDING}', next_attempt_at = CASE WHEN e.enabled THEN now() END,
    retry_base = d.attempts_count, completed_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL
FROM endpoint e
WHERE e.id = d.endpoint_id AND e.deleted_at IS NULL AND d.id = ANY($1::text[])
  AND d.status <> '{DELIVERING}'
RETURNING d.id
"""  # noqa: S608 - constants only; values are bound

_PICK_FAILED = f"""
SELECT id FROM delivery
WHERE endpoint_id = $1 AND status = '{FAILED}' AND created_at >= $2 AND created_at < $3
ORDER BY id LIMIT $4
"""  # noqa: S608 - constants only; values are bound


async def requeue(connection: asyncpg.Connection, endpoint_ids: Sequence[str],
                  delivery_ids: Sequence[str]) -> list[str]:
    """Put deliveries back to `pending`, due now (parked if their endpoint is disabled),
    with a fresh retry schedule; their attempts are kept. Returns the ids requeued."""
    async with connection.transaction():
        await connection.execute(_LOCK_ENDPOINTS_SHARED, sorted(set(endpoint_ids)))
        rows = await connection.fetch(_REQUEUE, list(delivery_ids))
        if rows:
            await notify_due(connection)
    return [row["id"] for row in rows]


async def recover_failed(connection: asyncpg.Connection, endpoint_id: str, since: datetime,
                         until: datetime, batch: int = 1000) -> list[str]:
    """Requeue up to `batch` failed deliveries of the endpoint created in [since, until)."""
    rows = await connection.fetch(_PICK_FAILED, endpoint_id, since, until, batch)
    if not rows:
        return []
    return await requeue(connection, [endpoint_id], [row["id"] for row in rows])


# --- by hand, in bulk -----------------------------------------------------------------------

BULK_BATCH = 1000
"""Deliveries requeued per statement by a bulk retry: short transactions, few row locks."""


def _bulk_where(endpoint_id: str | None, statuses: Sequence[str], low: str | None,
                high: str | None, after: str | None = None) -> tuple[str, list[Any]]:
    values: list[Any] = [list(statuses)]
    where = ["status = ANY($1::text[])"]
    for column, operator, value in (("endpoint_id", "=", endpoint_id), ("id", ">=", low),
                                    ("id", "<", high), ("id", ">", after)):
        if value is not None:
            values.append(value)
            where.append(f"{column} {operator} ${len(values)}")
    return " AND ".join(where), values


async def count_for_retry(connection: asyncpg.Connection, endpoint_id: str | None,
                          statuses: Sequence[str], low: str | None, high: str | None) -> int:
    """How many deliveries a bulk retry would requeue (ids in [low, high))."""
    where, values = _bulk_where(endpoint_id, statuses, low, high)
    sql = f"SELECT count(*) FROM delivery WHERE {where}"  # noqa: S608 - values are bound
    return int(await connection.fetchval(sql, *values))


async def retry_in_bulk(connection: asyncpg.Connection, endpoint_id: str | None,
                        statuses: Sequence[str], low: str | None, high: str | None,
                        batch: int = BULK_BATCH) -> int:
    """Requeue every delivery in `statuses` (ids in [low, high)), `batch` per statement,
    oldest first; returns how many were requeued."""
    total = 0
    after: str | None = None
    while True:
        where, values = _bulk_where(endpoint_id, statuses, low, high, after)
        values.append(batch)
        rows = await connection.fetch(
            f"SELECT id, endpoint_id FROM delivery WHERE {where} "  # noqa: S608 - values are bound
            f"ORDER BY id LIMIT ${len(values)}",
            *values)
        if not rows:
            return total
        total += len(await requeue(connection, sorted({row["endpoint_id"] for row in rows}),
                                   [row["id"] for row in rows]))
        if len(rows) < batch:
            return total
        after = rows[-1]["id"]

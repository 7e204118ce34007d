"""Routing: turn stored events into deliveries, each event exactly once.

Ingest lists every new event in `event_unrouted` (a narrow row: id, type, source, time)
in the statement that stores it. Routing takes them from there, two statements a batch
in one transaction (so that both run on their generic plans, dispatch.queue.GENERIC_PLAN):

1. Take the routing lock (an advisory lock for the transaction; a dispatcher that does
   not get it routes nothing this time) and read the oldest queued events, with the
   endpoint table's change stamp so the cached subscriptions are known current; match
   the events against them in Python (bodies read only when some endpoint has a filter).
   The routing dispatcher reserves room (a slot, the endpoint's gate) for the deliveries
   it can send at once (`Taker`).
2. One statement, atomic on its own: delete those events from the queue, insert the
   deliveries of the events it deleted (and only those), the reserved ones already
   leased to the routing dispatcher, count them in the rollups, and `NOTIFY` when some
   are left due for a claim. The leased ones are sent once the transaction commits: in
   the steady state a delivery costs no claim and no wake-up, only its insert and settle.

An event leaves the queue in exactly one statement, and its deliveries are inserted by
that statement or not at all: never twice, never half-routed. The event row itself is
never written again. One dispatcher routes at a time: two would read and match the same
events, and only one of them could route them. Every dispatcher answers every wake-up,
so the first to take the lock routes: the one least busy sending, which then sends what
it routed. Routing, and the sends it hands over, thus follow whichever process has time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import asyncpg
from django.conf import settings

from dispatch.endpoints import Subscription, Subscriptions
from dispatch.queue import (
    DUE_CHANNEL,
    Claimed,
    Pinned,
    new_delivery_ids,
    planned_once,
)
from dispatch.rollups import COUNT_ROUTED_EVENTS
from dispatch.states import DELIVERING, PENDING
from kernel.filters import MAX_VISITS, FilterBudget, endpoint_wants, parse_document

ROUTING_LOCK = 7_301_006
"""Advisory lock key (transaction-level): one dispatcher routes at a time."""

_TAKE_UNROUTED = f"""
SELECT s.n, s.changed, s.mine, u.event_id AS id, u.event_type, u.source_slug,
       CASE WHEN $2 THEN (SELECT e.body FROM event e WHERE e.id = u.event_id) END AS body
FROM (SELECT count(*) AS n, max(updated_at) AS changed,
             pg_try_advisory_xact_lock({ROUTING_LOCK}) AS mine FROM endpoint) AS s
LEFT JOIN LATERAL (
    SELECT event_id, event_type, source_slug FROM event_unrouted WHERE s.mine
    ORDER BY event_id LIMIT $1
) AS u ON true
"""  # noqa: S608 - constant SQL text
"""The queued events (oldest first) with the endpoint table's stamp: always one row at
least (`id` NULL when nothing is queued). Bodies only when some endpoint has a filter.
No events (`mine` false) when another dispatcher holds the routing lock: it is routing,
and goes on while it finds a full batch; what it leaves, the next wake-up's first
dispatcher routes."""

_ROUTE = f"""
WITH marked AS (
    DELETE FROM event_unrouted WHERE event_id = ANY($1::text[])
    RETURNING event_id AS id, source_slug, received_at
), counted AS ({COUNT_ROUTED_EVENTS}), made AS (
    SELECT v.id, v.event_id, v.endpoint_id, e.timeout_seconds,
           coalesce(e.enabled AND e.kind <> 'cli' AND e.circuit_opened_at IS NULL, false)
               AS sendable,
           coalesce(v.spans, 0) AS spans,
           v.ord
    FROM unnest($2::text[], $3::text[], $4::text[], $5::int[]) WITH ORDINALITY
         AS v(id, event_id, endpoint_id, spans, ord)
    JOIN marked ON marked.id = v.event_id
    LEFT JOIN endpoint e ON e.id = v.endpoint_id
), inserted AS (
    INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                          next_attempt_at, lease_owner, lease_expires_at, created_at)
    SELECT id, event_id, endpoint_id,
           CASE WHEN spans > 0 AND sendable THEN '{DELIVERING}' ELSE '{PENDING}' END, 0, 0,
           CASE WHEN NOT sendable THEN NULL
                WHEN spans = 0 AND endpoint_id = ANY($9::text[])
                THEN now() + make_interval(secs => coalesce(timeout_seconds, $7))
                ELSE now() END,
           CASE WHEN spans > 0 AND sendable THEN $6 END,
           CASE WHEN spans > 0 AND sendable THEN now() + make_interval(
               secs => coalesce(timeout_seconds, $7) * spans + $8) END,
           now()
    FROM made ORDER BY ord
    RETURNING id, event_id, endpoint_id, status, next_attempt_at
), summary AS (
    SELECT (SELECT count(*) FROM marked) AS events, count(*) AS deliveries,
           count(*) FILTER (WHERE status = '{PENDING}' AND next_attempt_at <= now())
               AS queued
    FROM inserted
)
SELECT s.events, s.deliveries, s.queued,
       CASE WHEN s.queued > 0 THEN pg_notify('{DUE_CHANNEL}', '') END AS notified,
       i.id, i.event_id, i.endpoint_id, 0 AS attempts_count, 0 AS retry_base,
       i.next_attempt_at, true AS endpoint_exists, e.enabled,
       e.updated_at AS endpoint_updated_at, e.circuit_opened_at, e.consecutive_failures,
       e.circuit_probe_at, true AS event_exists, ev.body, ev.headers, ev.content_type,
       ev.event_type, ev.source_slug, ev.received_at
FROM summary s
LEFT JOIN (inserted i
           JOIN endpoint e ON e.id = i.endpoint_id
           CROSS JOIN LATERAL (SELECT body, headers, content_type, event_type, source_slug,
                                      received_at
                               FROM event WHERE id = i.event_id OFFSET 0) AS ev
          ) ON i.status = '{DELIVERING}'
"""  # noqa: S608 - constant SQL text
"""Take the events out of the queue (any that another statement took first are not
returned), insert the deliveries of exactly those, count them in their source's rollups,
and wake the dispatchers when some are due: all or nothing. A delivery to a disabled
endpoint, or to one whose circuit is open, is inserted parked: it is not claimed, put back
nor updated until the endpoint is enabled or its circuit closes
(dispatch.queue.circuit_upkeep).

Deliveries the routing dispatcher has reserved room for ($5 > 0, see `Taker`) are inserted
already leased to it ($6; the lease lasts $5 times the endpoint's timeout, else $7, plus
$8: one timeout for a delivery sent at once, two for one that first waits its turn) when
their endpoint can be sent to, and come back with what sending them needs (the columns of
a claim): they are sent without a claim, and wake no dispatcher. One row at least: the
counts, with `id` NULL when nothing was leased. The deliveries left to the queue for an
endpoint in $9 (`Taker.quiet`) are due one timeout later: they wake nobody, and the
claims until then do not walk past them. Rows go in in the order given, event
by event: deliveries due at the same moment are claimed in that order. Each event is read
by its primary key (`OFFSET 0` keeps the lookup a nested loop, whatever the kept generic
plan thinks of the table's size)."""


class Taker(Protocol):
    """The dispatcher of the routing process: it sends the deliveries it has room for as
    they are made, without a claim (no wake-up, no claim statement, one row update less).
    The others are inserted due, for any dispatcher to claim."""

    owner: str
    lease_margin: float

    async def reserve(self, connection: asyncpg.Connection,
                      subscriptions: Sequence[Subscription],
                      endpoint_ids: Sequence[str]) -> list[int]:
        """For each delivery about to be made: 0 when it is left due; else how many of
        its endpoint's timeouts its lease must cover: SEND_NOW (a slot and the gate's
        admission are held for it) or WAIT_TURN (the gate is full: it waits for the next
        place the endpoint's sends in flight free, then is sent)."""

    async def ready(self, connection: asyncpg.Connection,
                    rows: Sequence[asyncpg.Record]) -> list[Claimed]:
        """The leased rows it will send (in the routing transaction: anything it cannot
        send is put back there)."""

    def quiet(self) -> list[str]:
        """Endpoints that took none of the last `reserve`'s deliveries because they have
        stopped answering (a full gate, a full line, nothing answered for a while): the
        deliveries left to the queue for them are due one endpoint timeout later, and
        wake no dispatcher. By then the requests out have ended (answered, or timed out
        and counted towards the circuit, whose opening parks them); until then a claim
        could not send them either, and would walk past every one of them to look for
        work, each time."""

    def taken(self, jobs: Sequence[Claimed], reserved: Mapping[str, tuple[str, int]]) -> None:
        """After the commit: send `jobs`; give back what `reserved` (delivery id →
        endpoint id, what `reserve` answered) held beyond them."""


SEND_NOW = 1
WAIT_TURN = 2

STALE_READS = 3
"""Batches in a row a routing pass reads again when every event it read had just been
routed by the dispatcher that held the lock before it (see `Router.route_all`)."""


log = logging.getLogger("relay.dispatch")

YIELD_EVERY = MAX_VISITS // 10
"""Filter work (elements visited) after which matching lets the event loop run."""


async def match(subscriptions: list[Subscription], rows: Sequence[Mapping[str, Any]]
                ) -> list[tuple[str, str]]:
    """(event id, endpoint id) for every endpoint that wants each event.

    Each filter has a bounded cost per event; one that gives up does not match, with a log
    line saying so. The loop gets a turn whenever enough filter work has piled up, so a
    batch of costly events does not stall other tasks of the process.
    """
    pairs: list[tuple[str, str]] = []
    unpaid = 0
    for row in rows:
        document: object = None
        for sub in subscriptions:
            if sub.rule is not None and document is None:
                document = parse_document(bytes(row["body"] or b""))
            budget = FilterBudget()
            if endpoint_wants(sub.event_types, sub.sources, sub.rule,
                              row["event_type"], row["source_slug"], document, budget):
                pairs.append((row["id"], sub.id))
            elif budget.exhausted:
                log.warning("event %s not routed to endpoint %s: its filter gave up after "
                            "%d body elements (limit %d)", row["id"], sub.id, budget.spent,
                            budget.limit)
            unpaid += budget.spent
            if unpaid >= YIELD_EVERY:
                unpaid = 0
                await asyncio.sleep(0)
    return pairs


class Router:
    def __init__(self, batch: int = 500, taker: Taker | None = None) -> None:
        self.batch = batch
        self.taker = taker
        """Without one (a router on its own), every delivery is inserted due."""
        self.subscriptions = Subscriptions()
        self.other_routes = False
        """The last pass found the routing lock held: another dispatcher was routing."""
        self.queued = 0
        """Deliveries the last `route_all` inserted due (not taken by `taker`, nor for an
        endpoint it calls quiet): work for a claim."""
        self.home = Pinned(keep=False)
        """The connection routing runs on: a dispatcher's route loop keeps one."""

    async def route_batch(self) -> tuple[int, int, int]:
        """Route up to one batch; returns (events read, events routed here, deliveries
        created). Events read but routed by another dispatcher count only as read."""
        reserved: dict[str, tuple[str, int]] = {}
        jobs: list[Claimed] = []
        try:
            async with self.home.connection() as connection, planned_once(connection):
                rows: list[Any] = await connection.fetch(_TAKE_UNROUTED, self.batch,
                                                         self.subscriptions.any_rule)
                self.other_routes = not rows[0]["mine"]
                had_rule = self.subscriptions.any_rule
                subscriptions = await self.subscriptions.refresh(
                    connection, (rows[0]["n"], rows[0]["changed"]))
                if self.subscriptions.any_rule and not had_rule:
                    rows = await connection.fetch(_TAKE_UNROUTED, self.batch, True)
                rows = [row for row in rows if row["id"] is not None]
                if not rows:
                    return 0, 0, 0
                pairs = await match(subscriptions, rows)
                ids = new_delivery_ids(len(pairs))
                spans = [0] * len(pairs)
                if self.taker is not None and pairs:
                    spans = await self.taker.reserve(connection, subscriptions,
                                                     [endpoint_id for _, endpoint_id in pairs])
                    reserved = {delivery_id: (endpoint_id, span) for delivery_id,
                                (_, endpoint_id), span in zip(ids, pairs, spans, strict=True)
                                if span}
                routed = await connection.fetch(
                    _ROUTE, [row["id"] for row in rows], ids,
                    [event_id for event_id, _ in pairs],
                    [endpoint_id for _, endpoint_id in pairs], spans,
                    self.taker.owner if self.taker is not None else None,
                    settings.RELAY_DELIVERY_TIMEOUT,
                    self.taker.lease_margin if self.taker is not None else 0.0,
                    self.taker.quiet() if self.taker is not None else [])
                leased = [row for row in routed if row["id"] is not None]
                if self.taker is not None and leased:
                    jobs = await self.taker.ready(connection, leased)
        except BaseException:
            if self.taker is not None and reserved:
                self.taker.taken([], reserved)
            raise
        if self.taker is not None and reserved:
            self.taker.taken(jobs, reserved)
        self.queued += routed[0]["queued"]
        return len(rows), routed[0]["events"], routed[0]["deliveries"]

    async def route_all(self) -> int:
        """Route until nothing is left, or until another dispatcher is routing the same
        events (it goes on with them); returns the deliveries created (`queued`: how
        many of them were inserted due).

        A batch read under the routing lock whose events were all gone by the time it
        deleted them is not another dispatcher at work: the read's snapshot was taken
        before the lock, and the dispatcher that held it committed those events and let
        go in between. Stopping there would leave the rest of the queue to the next
        wake-up, so the pass reads again (a new statement sees what was committed)."""
        created = self.queued = 0
        stale = 0
        while True:
            read, routed, deliveries = await self.route_batch()
            created += deliveries
            if read and not routed and stale < STALE_READS:
                stale += 1
                continue
            if read < self.batch or not routed:
                return created
            stale = 0

"""Routing: turn stored events into deliveries, each event exactly once.

Ingest lists every new event in `event_unrouted` (a narrow row: id, type, source, time)
in the statement that stores it. Routing takes them from there, two statements a batch
in one transaction (so that both run on their generic plans, dispatch.queue.GENERIC_PLAN):

1. Take the routing lock (an advisory lock for the transaction; a dispatcher that does
   not get it routes nothing this time) and read the oldest queued events, with the
   endpoint table's change stamp so the cached subscriptions are known current; match
   the events against them in Python (bodies read only when some endpoint has a filter).
2. One statement, atomic on its own: delete those events from the queue, insert the
   deliveries of the events it deleted (and only those), count them in the rollups, and
   `NOTIFY` when it inserted any.

An event leaves the queue in exactly one statement, and its deliveries are inserted by
that statement or not at all: never twice, never half-routed. The event row itself is
never written again. One dispatcher routes at a time: two would read and match the same
events, and only one of them could route them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dispatch.endpoints import Subscription, Subscriptions
from dispatch.queue import DUE_CHANNEL, new_delivery_ids, planned_once, pooled
from dispatch.rollups import COUNT_ROUTED_EVENTS
from dispatch.states import PENDING
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
No events (`mine` false) when another dispatcher holds the routing lock: it routes
them, and it is woken by the same notifications, so none waits for this one."""

_ROUTE = f"""
WITH marked AS (
    DELETE FROM event_unrouted WHERE event_id = ANY($1::text[])
    RETURNING event_id AS id, source_slug, received_at
), counted AS ({COUNT_ROUTED_EVENTS}), inserted AS (
    INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                          next_attempt_at, created_at)
    SELECT v.id, v.event_id, v.endpoint_id, '{PENDING}', 0, 0,
           (SELECT CASE WHEN NOT e.enabled OR e.kind = 'cli'
                             OR e.circuit_opened_at IS NOT NULL THEN NULL
                        ELSE now() END
            FROM endpoint e WHERE e.id = v.endpoint_id),
           now()
    FROM unnest($2::text[], $3::text[], $4::text[]) AS v(id, event_id, endpoint_id)
    JOIN marked ON marked.id = v.event_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS events, count(*) AS deliveries,
       CASE WHEN count(*) > 0 AND $5 THEN pg_notify('{DUE_CHANNEL}', '') END AS notified
FROM inserted
"""  # noqa: S608 - constant SQL text
"""Take the events out of the queue (any that another statement took first are not returned),
insert the deliveries of exactly those, count them in their source's rollups, wake the
dispatchers ($5: when the routing one cannot take them all itself): all or nothing. A delivery to a disabled endpoint, or to one whose circuit is open, is
inserted parked: it is not claimed, put back nor updated until the endpoint is enabled or
its circuit closes (dispatch.queue.circuit_upkeep)."""


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
    def __init__(self, batch: int = 500, room: Callable[[], int] | None = None) -> None:
        self.batch = batch
        self.room = room
        """How many deliveries this process can start sending now (its dispatcher's free
        slots). Deliveries that fit are left to it, woken in process: the other
        dispatchers are woken (`NOTIFY`) only for more than that. Without it (a router
        on its own), every routing that creates deliveries notifies."""
        self.subscriptions = Subscriptions()
        self.other_routes = False
        """The last pass found the routing lock held: another dispatcher routes, woken by
        the same notifications, until the queue is empty."""

    async def route_batch(self) -> tuple[int, int, int]:
        """Route up to one batch; returns (events read, events routed here, deliveries
        created). Events read but routed by another dispatcher count only as read."""
        async with pooled() as connection, planned_once(connection):
            rows = await connection.fetch(_TAKE_UNROUTED, self.batch,
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
            notify = self.room is None or len(pairs) > self.room()
            result = await connection.fetchrow(
                _ROUTE, [row["id"] for row in rows], new_delivery_ids(len(pairs)),
                [event_id for event_id, _ in pairs],
                [endpoint_id for _, endpoint_id in pairs], notify)
            return len(rows), result["events"], result["deliveries"]

    async def route_all(self) -> int:
        """Route until nothing is left, or until another dispatcher is routing the same
        events (it goes on with them); returns the deliveries created."""
        created = 0
        while True:
            read, routed, deliveries = await self.route_batch()
            created += deliveries
            if read < self.batch or not routed:
                return created

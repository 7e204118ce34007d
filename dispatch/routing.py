"""Routing: turn stored events into deliveries, each event exactly once.

Two round trips a batch, no explicit transaction:

1. Read (no lock) the oldest unrouted events (partial index `event_unrouted_idx`) and, in
   the same statement, the endpoint table's change stamp, so the cached subscriptions are
   known current; match the events against them in Python.
2. One statement, atomic on its own: lock those events still unrouted with
   `FOR UPDATE SKIP LOCKED`, mark them routed, insert the deliveries of the events it
   marked (and only those), and `NOTIFY` when it inserted any.

With any number of dispatchers an event is marked by exactly one statement, and its
deliveries are inserted by that statement or not at all: never twice, never half-routed.
Two dispatchers that read the same events both match them; the second one's statement
finds them locked or routed and inserts nothing for them.
"""

from __future__ import annotations

from dispatch.endpoints import Subscription, Subscriptions
from dispatch.filters import endpoint_wants, parse_document
from dispatch.queue import DUE_CHANNEL, new_delivery_ids, pooled
from dispatch.rollups import COUNT_ROUTED_EVENTS

_TAKE_UNROUTED = """
SELECT s.n, s.changed, u.id, u.event_type, u.source_slug, u.body
FROM (SELECT count(*) AS n, max(updated_at) AS changed FROM endpoint) AS s
LEFT JOIN LATERAL (
    SELECT id, event_type, source_slug, CASE WHEN $2 THEN body END AS body
    FROM event WHERE routed_at IS NULL
    ORDER BY id LIMIT $1
) AS u ON true
"""
"""The unrouted events (oldest first) with the endpoint table's stamp: always one row at
least (`id` NULL when nothing is unrouted). Bodies only when some endpoint has a filter."""

_ROUTE = f"""
WITH marked AS (
    UPDATE event SET routed_at = now()
    WHERE id IN (SELECT id FROM event WHERE id = ANY($1::text[]) AND routed_at IS NULL
                 FOR UPDATE SKIP LOCKED)
    RETURNING id, source_slug, received_at
), counted AS ({COUNT_ROUTED_EVENTS}), inserted AS (
    INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                          next_attempt_at, created_at)
    SELECT v.id, v.event_id, v.endpoint_id, 'pending', 0, 0, now(), now()
    FROM unnest($2::text[], $3::text[], $4::text[]) AS v(id, event_id, endpoint_id)
    JOIN marked ON marked.id = v.event_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS events, count(*) AS deliveries,
       CASE WHEN count(*) > 0 THEN pg_notify('{DUE_CHANNEL}', '') END AS notified
FROM inserted
"""  # noqa: S608 - constant SQL text
"""Mark the events this statement could lock and that are still unrouted, insert the
deliveries of exactly those, count them in their source's rollups, wake the dispatchers:
all or nothing."""


def match(subscriptions: list[Subscription], rows: list) -> list[tuple[str, str]]:
    """(event id, endpoint id) for every endpoint that wants each event."""
    pairs: list[tuple[str, str]] = []
    for row in rows:
        document: object = None
        for sub in subscriptions:
            if sub.rule is not None and document is None:
                document = parse_document(bytes(row["body"] or b""))
            if endpoint_wants(sub.event_types, sub.sources, sub.rule,
                              row["event_type"], row["source_slug"], document):
                pairs.append((row["id"], sub.id))
    return pairs


class Router:
    def __init__(self, batch: int = 500) -> None:
        self.batch = batch
        self.subscriptions = Subscriptions()

    async def route_batch(self) -> tuple[int, int, int]:
        """Route up to one batch; returns (events read, events routed here, deliveries
        created). Events read but routed by another dispatcher count only as read."""
        async with pooled() as connection:
            rows = await connection.fetch(_TAKE_UNROUTED, self.batch,
                                          self.subscriptions.any_rule)
            had_rule = self.subscriptions.any_rule
            subscriptions = await self.subscriptions.refresh(
                connection, (rows[0]["n"], rows[0]["changed"]))
            if self.subscriptions.any_rule and not had_rule:
                rows = await connection.fetch(_TAKE_UNROUTED, self.batch, True)
            rows = [row for row in rows if row["id"] is not None]
            if not rows:
                return 0, 0, 0
            pairs = match(subscriptions, rows)
            result = await connection.fetchrow(
                _ROUTE, [row["id"] for row in rows], new_delivery_ids(len(pairs)),
                [event_id for event_id, _ in pairs], [endpoint_id for _, endpoint_id in pairs])
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

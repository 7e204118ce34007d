"""Routing: turn stored events into deliveries, each event exactly once.

A batch of unrouted events is locked with `FOR UPDATE SKIP LOCKED` (partial index
`event_unrouted_idx`), matched against the enabled endpoints, and its deliveries are
inserted and the events marked routed in the same transaction: with any number of
dispatchers, an event is routed by exactly one of them, and never half-routed.
"""

from __future__ import annotations

from dispatch.endpoints import Subscriptions
from dispatch.filters import endpoint_wants, parse_document
from dispatch.queue import insert_deliveries, notify_due, pooled

_TAKE_UNROUTED = """
SELECT id, event_type, source_slug, CASE WHEN $2 THEN body END AS body
FROM event WHERE routed_at IS NULL
ORDER BY id LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_MARK_ROUTED = "UPDATE event SET routed_at = now() WHERE id = ANY($1::text[])"


class Router:
    def __init__(self, batch: int = 500) -> None:
        self.batch = batch
        self.subscriptions = Subscriptions()

    async def route_batch(self) -> tuple[int, int]:
        """Route up to one batch; returns (events routed, deliveries created)."""
        async with pooled() as connection, connection.transaction():
            subscriptions = await self.subscriptions.refresh(connection)
            rows = await connection.fetch(_TAKE_UNROUTED, self.batch,
                                          self.subscriptions.any_rule)
            if not rows:
                return 0, 0
            pairs: list[tuple[str, str]] = []
            for row in rows:
                document: object = None
                for sub in subscriptions:
                    if sub.rule is not None and document is None:
                        document = parse_document(bytes(row["body"] or b""))
                    if endpoint_wants(sub.event_types, sub.sources, sub.rule,
                                      row["event_type"], row["source_slug"], document):
                        pairs.append((row["id"], sub.id))
            await insert_deliveries(connection, pairs)
            await connection.execute(_MARK_ROUTED, [row["id"] for row in rows])
            if pairs:
                await notify_due(connection)
            return len(rows), len(pairs)

    async def route_all(self) -> int:
        """Route until nothing is left; returns the deliveries created."""
        created = 0
        while True:
            events, deliveries = await self.route_batch()
            created += deliveries
            if events < self.batch:
                return created

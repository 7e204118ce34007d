"""The dispatcher's hot statements use their partial indexes (plans checked on a table
where most rows are finished, as in production)."""

from __future__ import annotations

import re

from dispatch import queue
from dispatch.queue import pooled

FILL = """
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at, completed_at)
SELECT 'dlv_' || lpad(n::text, 26, '0'), 'evt_x', 'ep_' || (n % 50),
       CASE WHEN n % 100 = 0 THEN 'pending' ELSE 'succeeded' END, 1, 0,
       CASE WHEN n % 100 = 0 THEN now() - interval '1 second' END, now(), now()
FROM generate_series(1, 50000) AS n
"""
FILL_EVENTS = """
INSERT INTO event (id, received_at, method, query, headers, content_type, size, body, routed_at)
SELECT 'evt_' || lpad(n::text, 26, '0'), now(), 'POST', '', '{}', '', 0, '',
       CASE WHEN n % 100 <> 0 THEN now() END
FROM generate_series(1, 50000) AS n
"""


async def plan(connection, sql: str, *args) -> str:
    rows = await connection.fetch(f"EXPLAIN {sql}", *args)
    return "\n".join(row[0] for row in rows)


def full_scan(plan_text: str) -> bool:
    """A sequential scan of the rows (here in the default partitions: their ids are made
    up); the day partitions are empty, and a scan of an empty table is free."""
    return re.search(r"Seq Scan on (delivery|event)(_default)? ", plan_text) is not None


async def uses(connection, plan_text: str, index: str) -> bool:
    """Whether the plan reads `index` or one of its partitions' copies."""
    names = {row["relname"] for row in await connection.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass", index)} | {index}
    return any(f" {name} " in f" {plan_text} " or f" {name}\n" in plan_text for name in names)


async def test_claim_sweep_and_routing_use_partial_indexes(db):
    async with pooled() as connection:
        await connection.execute(FILL)
        await connection.execute(FILL_EVENTS)
        await connection.execute("ANALYZE delivery")
        await connection.execute("ANALYZE event")
        claim = await plan(connection, queue._CLAIM, "me", 100, [], 15.0, 30.0, 30.0)
        assert await uses(connection, claim, "delivery_due_idx"), claim
        # The open-circuit check is looked up per row reached, not joined to every due row.
        assert "Anti Join" not in claim, claim
        within = await plan(connection, queue._CLAIM_WITHIN_ALLOWANCES, "me", 100, [], 15.0,
                            30.0, 200, ["ep_1"], [1], 0, 30.0)
        assert await uses(connection, within, "delivery_due_idx"), within
        assert "Anti Join" not in within, within
        # No delivery is leased here: any index on status will do, but never a full scan.
        sweep = await plan(connection, queue._SWEEP, 1000)
        assert not full_scan(sweep), sweep
        from dispatch.routing import _TAKE_UNROUTED

        routing = await plan(connection, _TAKE_UNROUTED, 500, False)
        assert await uses(connection, routing, "event_unrouted_idx"), routing
        park = await plan(connection, queue._PARK, "ep_1")
        assert not full_scan(park), park

"""The dispatcher's hot statements use their partial indexes (plans checked on a table
where most rows are finished, as in production)."""

from __future__ import annotations

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


async def test_claim_sweep_and_routing_use_partial_indexes(db):
    async with pooled() as connection:
        await connection.execute(FILL)
        await connection.execute(FILL_EVENTS)
        await connection.execute("ANALYZE delivery")
        await connection.execute("ANALYZE event")
        claim = await plan(connection, queue._CLAIM, "me", 100, [], 15.0, 30.0, 30.0)
        assert "delivery_due_idx" in claim, claim
        # The open-circuit check is looked up per row reached, not joined to every due row.
        assert "Anti Join" not in claim, claim
        within = await plan(connection, queue._CLAIM_WITHIN_ALLOWANCES, "me", 100, [], 15.0,
                            30.0, 200, ["ep_1"], [1], 0, 30.0)
        assert "delivery_due_idx" in within and "Anti Join" not in within, within
        # No delivery is leased here: any index on status will do, but never a full scan.
        sweep = await plan(connection, queue._SWEEP, 1000)
        assert "Seq Scan" not in sweep, sweep
        from dispatch.routing import _TAKE_UNROUTED

        routing = await plan(connection, _TAKE_UNROUTED, 500, False)
        assert "event_unrouted_idx" in routing, routing
        park = await plan(connection, queue._PARK, "ep_1")
        assert "Seq Scan" not in park, park

"""The dispatcher's hot statements use their partial indexes (plans checked on a table
where most rows are finished, as in production)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

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
BACKLOG = """
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at)
SELECT 'dlv_b' || lpad(n::text, 25, '0'), 'evt_x', 'ep_backlog', 'pending', 0, 0,
       CASE WHEN n % 2 = 0 THEN now() END, now()
FROM generate_series(1, 20000) AS n
"""
"""An endpoint with a backlog of 20,000 (half parked), beside the 50,000 of `FILL`."""
FILL_EVENTS = """
INSERT INTO event (id, received_at, method, query, headers, content_type, size, body)
SELECT 'evt_' || lpad(n::text, 26, '0'), now(), 'POST', '', '{}', '', 0, ''
FROM generate_series(1, 50000) AS n
"""
QUEUE_EVENTS = """
INSERT INTO event_unrouted (event_id, received_at)
SELECT 'evt_' || lpad(n::text, 26, '0'), now() FROM generate_series(2, 50000, 2) AS n
"""


async def fill(connection) -> None:
    """Mostly finished deliveries and routed events, analyzed: the plans of production."""
    for statement in (FILL, FILL_EVENTS, QUEUE_EVENTS, "ANALYZE delivery", "ANALYZE event",
                      "ANALYZE event_unrouted"):
        await connection.execute(statement)


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
        await fill(connection)
        claim = await plan(connection, queue._CLAIM, "me", 100, [], 15.0, 30.0, 30.0, None)
        assert await uses(connection, claim, "delivery_due_idx"), claim
        # The open-circuit check is looked up per row reached, not joined to every due row.
        assert "Anti Join" not in claim, claim
        within = await plan(connection, queue._CLAIM_WITHIN_ALLOWANCES, "me", 100, [], 15.0,
                            30.0, 200, ["ep_1"], [1], 0, 30.0, None)
        assert await uses(connection, within, "delivery_due_idx"), within
        assert "Anti Join" not in within, within
        # The deliveries in flight are found through the status index (there is no index
        # on the lease's expiry: each claim would pay for it).
        sweep = await plan(connection, queue._SWEEP, 1000)
        assert await uses(connection, sweep, "delivery_status_idx"), sweep
        assert not full_scan(sweep), sweep
        from dispatch.routing import _TAKE_UNROUTED

        routing = await plan(connection, _TAKE_UNROUTED, 500, False)
        assert await uses(connection, routing, "event_unrouted_pkey"), routing
        park = await plan(connection, queue._PARK, "ep_1")
        assert not full_scan(park), park
        # A circuit's backlog is parked and unparked in chunks, each going on from the last
        # id of the one before: an index, never a scan of every delivery, also for a
        # large backlog at the chunk size used (as `id IN (SELECT ...)` a chunk of 1,000
        # was hash-joined against a scan of every delivery).
        await connection.execute(BACKLOG)
        await connection.execute("ANALYZE delivery")
        for chunked in (queue._PARK_CHUNK, queue._UNPARK_CHUNK):
            for endpoint, size in (("ep_0", 10), ("ep_backlog", queue.PARK_CHUNK)):
                walk = await plan(connection, chunked, endpoint, size, "dlv_0")
                assert not full_scan(walk), walk


async def generic_plan(connection, sql: str, *args) -> str:
    """The plan PostgreSQL keeps for `sql` under `queue.GENERIC_PLAN` (not one made for
    these values)."""
    await connection.execute(f"PREPARE probe AS {sql}")
    try:
        async with connection.transaction():
            await connection.execute(queue.GENERIC_PLAN)
            values = ", ".join(_literal(value) for value in args)
            rows = await connection.fetch(f"EXPLAIN EXECUTE probe({values})")
    finally:
        await connection.execute("DEALLOCATE probe")
    return "\n".join(row[0] for row in rows)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and value and isinstance(value[0], bool):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::bool[]"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::" + (
            "int[]" if value and isinstance(value[0], int) else "text[]")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return repr(value)


async def test_the_generic_plans_walk_the_partial_indexes(db):
    """Claims and routing run on their generic plans (planning them per call cost more than
    running them): those plans must walk the same partial indexes as plans made for
    given values."""
    async with pooled() as connection:
        await fill(connection)
        for due_from in (None, datetime.now(UTC) - timedelta(minutes=5)):
            claim = await generic_plan(connection, queue._CLAIM, "me", 100, [], 15.0, 30.0,
                                       30.0, due_from)
            assert await uses(connection, claim, "delivery_due_idx"), claim
            assert "Anti Join" not in claim and not full_scan(claim), claim
        within = await generic_plan(connection, queue._CLAIM_WITHIN_ALLOWANCES, "me", 100, [],
                                    15.0, 30.0, 200, ["ep_1"], [1], 0, 30.0, None)
        assert await uses(connection, within, "delivery_due_idx"), within
        assert "Anti Join" not in within and not full_scan(within), within
        from dispatch.routing import _ROUTE, _TAKE_UNROUTED

        unrouted = await generic_plan(connection, _TAKE_UNROUTED, 500, False)
        assert await uses(connection, unrouted, "event_unrouted_pkey"), unrouted
        route = await generic_plan(connection, _ROUTE, ["evt_1"], ["dlv_1"], ["evt_1"],
                                   ["ep_1"], [1], "me", 15.0, 30.0, ["ep_2"])
        assert not full_scan(route), route
        # The leased deliveries' events: one primary-key lookup each.
        assert await uses(connection, route, "event_pkey"), route


async def test_claims_are_not_planned_per_call(db):
    async with pooled() as connection:
        for _ in range(8):
            await queue.claim(connection, "me", 50, [], 15.0, 30.0)
        plans = await connection.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement = $1", queue._CLAIM)
    # The pooled connection may have claimed before (in other tests): never a custom plan.
    assert len(plans) == 1 and plans[0]["custom_plans"] == 0, plans
    assert plans[0]["generic_plans"] >= 8, plans


async def test_circuit_upkeep_is_not_planned_per_call(db):
    """It runs about every second in each dispatcher; planning its probe-candidate
    statement over every partition of `delivery` cost more than running it."""
    async with pooled() as connection:
        for _ in range(8):
            await queue.circuit_upkeep(connection, 30.0, 15.0, 5.0)
        plans = await connection.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement = $1", queue._PROBE_CANDIDATE)
    assert len(plans) == 1 and plans[0]["custom_plans"] == 0, plans
    assert plans[0]["generic_plans"] >= 8, plans


async def forget_statistics(connection, table: str) -> None:
    """Make `table` look as it does before autovacuum first analyzes it (a new database,
    a day partition in its first minute)."""
    await connection.execute(
        "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = $1::regclass", table)
    await connection.execute(
        "UPDATE pg_class SET reltuples = 0, relpages = 1 WHERE oid IN"
        " (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass)", table)
    await connection.execute("DELETE FROM pg_statistic WHERE starelid = $1::regclass", table)


async def test_claims_walk_the_due_index_on_a_partition_without_statistics(db):
    """Before its first ANALYZE, today's partition looked small to the planner, and the
    claim's generic plan became a bitmap scan of every open delivery and a sort: tens of
    milliseconds a claim, kept while the connection lived. The claims' settings leave the
    ordered walk of `delivery_due_idx` as the only plan, and no JIT compilation (the
    disabled plan nodes look dear enough to trigger it: seconds a claim)."""
    from kernel import partitions
    from kernel.ids import id_boundary

    today = partitions.partition_name("delivery", partitions.today())
    async with pooled() as connection:
        await connection.execute("""
            INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,
                                  retry_base, next_attempt_at, created_at, completed_at)
            SELECT $1 || lpad(n::text, 16, '0'), 'evt_x', 'ep_' || (n % 3),
                   CASE WHEN n % 4 = 0 THEN 'pending' ELSE 'succeeded' END, 0, 0,
                   CASE WHEN n % 4 = 0 THEN now() - interval '1 second' END, now(), now()
            FROM generate_series(1, 20000) AS n""", id_boundary("dlv", time.time()))
        await forget_statistics(connection, today)
        for sql, args in (
                (queue._CLAIM, ("me", 100, [], 15.0, 30.0, 30.0, None)),
                (queue._CLAIM_WITHIN_ALLOWANCES, ("me", 100, [], 15.0, 30.0, 200, ["ep_1"],
                                                  [1], 0, 30.0, None))):
            async with connection.transaction():
                await connection.execute(queue.IN_DUE_ORDER)
                claim = await plan(connection, sql, *args)
            assert await uses(connection, claim, "delivery_due_idx"), claim
            assert "Bitmap" not in claim, claim
            assert re.search(r"LockRows[^\n]*\n\s*->  Sort", claim) is None, claim
            assert "JIT" not in claim, claim


EVENTS_OF_TODAY = """
INSERT INTO event (id, received_at, method, query, headers, content_type, size, body)
SELECT $1 || lpad(n::text, 15, '0'), now(), 'POST', '', '{}', '', 0, ''
FROM generate_series(1, $2) AS n
"""


async def test_events_are_read_by_key_in_plans_made_while_the_day_was_empty(db):
    """Routing and claims read each delivery's event by its primary key. A connection
    keeps its generic plans: one made while today's event partition was nearly empty (as
    every connection's is early in the day, once autovacuum has analyzed it) read it
    with a sequential scan per delivery for as long as the connection lived, slower with
    every event of the day (0.5 s a routing batch after 6,000 events)."""
    from dispatch.routing import _ROUTE
    from kernel import partitions
    from kernel.ids import id_boundary

    today = partitions.partition_name("event", partitions.today())
    route_args = (["evt_1"], ["dlv_1"], ["evt_1"], ["ep_1"], [1], "me", 15.0, 30.0, ["ep_2"])
    claim_args = ("me", 100, [], 15.0, 30.0, 30.0, None)
    async with pooled() as connection:
        first = id_boundary("evt", time.time())
        await connection.execute(f"TRUNCATE {today}")
        await connection.execute(EVENTS_OF_TODAY, first + "a", 5)
        await connection.execute(f"ANALYZE {today}")
        await connection.execute(f"PREPARE route AS {_ROUTE}")
        await connection.execute(f"PREPARE claim AS {queue._CLAIM}")
        try:
            async with connection.transaction():
                await connection.execute(queue.IN_DUE_ORDER)
                # The plans are made (and kept) while the day's partition is nearly empty.
                await connection.execute(
                    f"EXPLAIN EXECUTE route({', '.join(map(_literal, route_args))})")
                await connection.execute(
                    f"EXPLAIN EXECUTE claim({', '.join(map(_literal, claim_args))})")
            await connection.execute(EVENTS_OF_TODAY, first + "b", 20000)
            for name, args, settings in (("route", route_args, queue.GENERIC_PLAN),
                                         ("claim", claim_args, queue.IN_DUE_ORDER)):
                async with connection.transaction():
                    await connection.execute(settings)
                    rows = await connection.fetch(
                        f"EXPLAIN EXECUTE {name}({', '.join(map(_literal, args))})")
                kept = "\n".join(row[0] for row in rows)
                assert f"Seq Scan on {today}" not in kept, kept
                assert "JIT" not in kept, kept
        finally:
            await connection.execute("DEALLOCATE route")
            await connection.execute("DEALLOCATE claim")


async def test_statements_over_deliveries_in_flight_use_the_partial_indexes(db):
    """Retention (what a day's drop must keep) and an endpoint's delete (cancel what is in
    flight) ask for every state in flight, `delivering` included: the partial indexes must
    hold those rows, or both statements read every delivery of the range."""
    from relay import retention

    async with pooled() as connection:
        await fill(connection)
        active = await plan(connection, retention._ACTIVE_EVENTS.split(" AS\n", 1)[1],
                            "evt_z")
        assert await uses(connection, active, "delivery_open_event_idx"), active
        cancel = await plan(connection, queue._CANCEL, "ep_1")
        assert await uses(connection, cancel, "delivery_open_endpoint_idx"), cancel

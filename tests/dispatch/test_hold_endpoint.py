"""When a circuit opens, the endpoint's due backlog is pushed back in short statements,
all of it, and nothing of other endpoints or already later (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch import queue
from dispatch.queue import pooled
from tests.dispatch.test_claim_allowances import FILL


async def test_hold_pushes_back_the_whole_due_backlog_in_chunks(db_left_empty):
    until = datetime.now(UTC) + timedelta(minutes=5)
    async with pooled() as connection:
        await connection.execute(FILL)  # 100 due deliveries for each of ep_a, ep_b, ep_c
        await connection.execute(
            "UPDATE delivery SET next_attempt_at = $1 WHERE id = 'dlv_' || lpad('3', 26, '0')",
            until + timedelta(minutes=1))
        await connection.execute(
            "UPDATE delivery SET status = 'succeeded' WHERE id = 'dlv_' || lpad('6', 26, '0')")
        held = await queue.hold_endpoint(connection, "ep_a", until, chunk=7)
        rows = await connection.fetch(
            "SELECT endpoint_id, status, next_attempt_at FROM delivery ORDER BY id")
    assert held == 98
    for row in rows:
        if row["endpoint_id"] != "ep_a" or row["status"] == "succeeded":
            assert row["next_attempt_at"] < datetime.now(UTC)
        else:
            assert row["next_attempt_at"] >= until
    assert sum(1 for row in rows if row["next_attempt_at"] == until) == 98

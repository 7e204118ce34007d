"""While a circuit is open its endpoint's waiting deliveries are parked: parked once when it
opens (in chunks, nothing of other endpoints), one made due as the probe when it
half-opens, all due again once it has closed (real PostgreSQL)."""

from __future__ import annotations

from dispatch import queue
from dispatch.queue import pooled
from tests.dispatch.test_claim_allowances import FILL

ENDPOINTS = """
INSERT INTO endpoint (id, url, description, kind, secret_encrypted, enabled, event_types,
                      sources, max_in_flight, consecutive_failures, circuit_opened_at,
                      circuit_parked, created_at, updated_at)
SELECT id, 'http://127.0.0.1/', '', 'webhook', 'x', enabled, '[]', '[]', 10, 5, opened,
       parked, now(), now()
FROM (VALUES ('ep_a', true, now() - interval '1 hour', true),
             ('ep_b', true, NULL::timestamptz, true),
             ('ep_c', false, NULL::timestamptz, true)) AS v(id, enabled, opened, parked)
"""
"""ep_a: circuit open an hour (half-open); ep_b: circuit closed, backlog still parked;
ep_c: disabled."""


async def _waiting(connection) -> dict[str, tuple[int, int]]:
    """Endpoint → (parked, due) waiting deliveries."""
    rows = await connection.fetch(
        "SELECT endpoint_id, count(*) FILTER (WHERE next_attempt_at IS NULL) AS parked,"
        " count(*) FILTER (WHERE next_attempt_at IS NOT NULL) AS due FROM delivery"
        " WHERE status IN ('pending', 'retrying') GROUP BY endpoint_id")
    return {row["endpoint_id"]: (row["parked"], row["due"]) for row in rows}


async def test_an_opened_circuit_parks_the_whole_backlog_in_chunks(db_left_empty):
    async with pooled() as connection:
        await connection.execute(FILL)  # 100 due deliveries for each of ep_a, ep_b, ep_c
        await connection.execute(
            "UPDATE delivery SET status = 'succeeded' WHERE id = 'dlv_' || lpad('6', 26, '0')")
        parked = await queue.park_opened(connection, "ep_a", chunk=7)
        assert parked == 99
        assert await _waiting(connection) == {"ep_a": (99, 0), "ep_b": (0, 100),
                                              "ep_c": (0, 100)}
        assert await queue.park_opened(connection, "ep_a", chunk=7) == 0


async def test_upkeep_lends_one_probe_and_unparks_a_closed_circuit(db_left_empty):
    async with pooled() as connection:
        await connection.execute(ENDPOINTS)
        await connection.execute(FILL)
        await connection.execute("UPDATE delivery SET next_attempt_at = NULL")

        assert await queue.circuit_upkeep(connection, 30.0, 15.0, 5.0, chunk=7) == (1, 100)
        # ep_a half-open: one candidate; ep_b closed: all due again, flag cleared;
        # ep_c disabled: its deliveries stay parked, whatever the flag says.
        assert await _waiting(connection) == {"ep_a": (99, 1), "ep_b": (0, 100),
                                              "ep_c": (100, 0)}
        flags = {row["id"]: row["circuit_parked"] for row in await connection.fetch(
            "SELECT id, circuit_parked FROM endpoint")}
        assert flags == {"ep_a": True, "ep_b": False, "ep_c": True}

        # While the probe is out, no other candidate; nor while the circuit rests.
        await connection.execute("UPDATE endpoint SET circuit_probe_at = now() WHERE id = 'ep_a'")
        assert await queue.circuit_upkeep(connection, 30.0, 15.0, 5.0) == (0, 0)
        await connection.execute("UPDATE endpoint SET circuit_probe_at = NULL,"
                                 " circuit_opened_at = now() WHERE id = 'ep_a'")
        assert await queue.circuit_upkeep(connection, 30.0, 15.0, 5.0) == (0, 0)
        assert await _waiting(connection) == {"ep_a": (99, 1), "ep_b": (0, 100),
                                              "ep_c": (100, 0)}

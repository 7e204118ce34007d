"""A claim leases no more of an endpoint's deliveries than its gate would admit, so it
does not lease rows only to hand them back (real PostgreSQL)."""

from __future__ import annotations

from collections import Counter

from dispatch import queue
from dispatch.gates import Gate, Gates
from dispatch.models import Endpoint
from dispatch.queue import pooled

FILL = """
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at)
SELECT 'dlv_' || lpad(n::text, 26, '0'), 'evt_x', (ARRAY['ep_a', 'ep_b', 'ep_c'])[1 + n % 3],
       'pending', 0, 0, now() - interval '1 hour' + n * interval '1 millisecond', now()
FROM generate_series(1, 300) AS n
"""


def test_gate_allowance_counts_free_slots_and_tokens():
    gate = Gate(max_in_flight=5, rate=None)
    assert gate.allowance(0.0) == 5
    assert gate.try_acquire(0.0) and gate.try_acquire(0.0)
    assert gate.allowance(0.0) == 3
    paced = Gate(max_in_flight=5, rate=20.0)
    assert paced.allowance(0.0) == 2  # a tenth of a second's worth of tokens
    assert paced.try_acquire(0.0) and paced.try_acquire(0.0)
    assert paced.allowance(0.0) == 0
    assert paced.allowance(0.05) == 1


def test_gates_report_only_allowances_below_the_claim_size():
    gates = Gates()
    assert gates.gate("ep_a", 3, None).try_acquire(0.0)
    assert gates.gate("ep_b", 500, None).try_acquire(0.0)
    assert gates.allowances(0.0, below=100) == {"ep_a": 2}


async def test_claim_within_allowances_leases_at_most_each_allowance(db):
    for endpoint_id, cap in (("ep_a", 4), ("ep_b", 200), ("ep_c", 7)):
        await Endpoint.create(id=endpoint_id, url="http://127.0.0.1/", secret_encrypted="x",
                              max_in_flight=cap)
    async with pooled() as connection:
        await connection.execute(FILL)
        # ep_a's gate has 2 free slots; ep_b and ep_c have no gate: their max_in_flight.
        rows = await queue.claim(connection, "me", 60, [], 15.0, 30.0, {"ep_a": 2})
        taken = Counter(row.endpoint_id for row in rows)
        assert taken["ep_a"] == 2 and taken["ep_c"] == 7
        assert 0 < taken["ep_b"] <= 60 - 9 and set(taken) == {"ep_a", "ep_b", "ep_c"}
        # Oldest first within an endpoint; nothing else was touched.
        assert sorted(row.id for row in rows if row.endpoint_id == "ep_a") == [
            f"dlv_{n:026d}" for n in (3, 6)]
        leased = await connection.fetchval(
            "SELECT count(*) FROM delivery WHERE status = 'delivering' AND lease_owner = 'me'")
        assert leased == len(rows)
        # An excluded endpoint gets nothing; without allowances the claim takes the oldest.
        rows = await queue.claim(connection, "me", 10, ["ep_b"], 15.0, 30.0, {})
        assert Counter(row.endpoint_id for row in rows) == {"ep_a": 4, "ep_c": 6}
        rows = await queue.claim(connection, "me", 6, [], 15.0, 30.0)
        assert len(rows) == 6

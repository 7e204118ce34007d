"""A claim leases no more of an endpoint's deliveries than its gate would admit, so it
does not lease rows only to hand them back (real PostgreSQL)."""

from __future__ import annotations

from collections import Counter

from dispatch import queue
from dispatch.gates import Gate, Gates, shared_allowances
from dispatch.models import Endpoint
from dispatch.queue import pooled
from tests.dispatch.conftest import (
    listening,
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)

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


def test_a_claim_leaves_what_the_claims_out_may_still_take():
    gates = {"ep_a": 8, "ep_b": 300, "ep_c": 0}
    assert shared_allowances(gates, []) == (gates, 0)
    # One claim of 50 out within allowances (ep_a 3; the others as much as admitted).
    assert shared_allowances(gates, [(50, {"ep_a": 3, "ep_c": 0})]) == (
        {"ep_a": 5, "ep_b": 250, "ep_c": 0}, 50)
    # An unconstrained claim of 50 may take anything up to 50 rows, and two add up.
    assert shared_allowances(gates, [(50, None), (20, None)]) == (
        {"ep_a": 0, "ep_b": 230, "ep_c": 0}, 70)


async def test_claim_within_allowances_leases_at_most_each_allowance(db_left_empty):
    for endpoint_id, cap in (("ep_a", 4), ("ep_b", 200), ("ep_c", 7)):
        await Endpoint.create(id=endpoint_id, url="http://127.0.0.1/", secret_encrypted="x",
                              max_in_flight=cap)
    async with pooled() as connection:
        await connection.execute(FILL)
        # ep_a's gate has 2 free slots; ep_b and ep_c have no gate: their max_in_flight.
        rows, _ = await queue.claim(connection, "me", 60, [], 15.0, 30.0, {"ep_a": 2})
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
        rows, _ = await queue.claim(connection, "me", 10, ["ep_b"], 15.0, 30.0, {})
        assert Counter(row.endpoint_id for row in rows) == {"ep_a": 4, "ep_c": 6}
        rows, _ = await queue.claim(connection, "me", 6, [], 15.0, 30.0)
        assert len(rows) == 6
        # Another claim of this process may still take 5 of each endpoint's max_in_flight.
        rows, _ = await queue.claim(connection, "me", 60, [], 15.0, 30.0, {}, reserved=5)
        taken = Counter(row.endpoint_id for row in rows)
        assert taken["ep_a"] == 0 and taken["ep_c"] == 7 - 5 and taken["ep_b"] > 2


ONE_ENDPOINT = """
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at)
SELECT 'dlv_' || lpad(n::text, 26, '0'), 'evt_x', 'ep_a', 'pending', 0, 0,
       now() - interval '1 hour' + n * interval '1 millisecond', now()
FROM generate_series(1, 10) AS n
"""


async def test_a_claim_within_allowances_passes_over_rows_another_claim_holds(db_left_empty):
    """Another dispatcher's claim holds the endpoint's oldest due rows (locked, not yet
    leased): this claim takes the next ones instead of coming back short."""
    await Endpoint.create(id="ep_a", url="http://127.0.0.1/", secret_encrypted="x",
                          max_in_flight=2)
    async with pooled() as other, pooled() as connection:
        await connection.execute(ONE_ENDPOINT)
        async with other.transaction():
            await other.execute(
                "SELECT id FROM delivery ORDER BY next_attempt_at LIMIT 2 FOR UPDATE")
            # The gate's allowance, then the endpoint's max_in_flight (no gate yet).
            for allowances in ({"ep_a": 2}, {}):
                attempt = connection.transaction()
                await attempt.start()
                rows, _ = await queue.claim(connection, "me", 4, [], 15.0, 30.0, allowances)
                await attempt.rollback()
                assert sorted(row.id for row in rows) == [
                    f"dlv_{n:026d}" for n in (3, 4)], allowances


async def test_a_claim_says_when_the_next_delivery_is_due(db_left_empty):
    await Endpoint.create(id="ep_a", url="http://127.0.0.1/", secret_encrypted="x")
    async with pooled() as connection:
        rows, next_due = await queue.claim(connection, "me", 5, [], 15.0, 30.0)
        assert rows == [] and next_due is None
        await connection.execute(ONE_ENDPOINT)
        await connection.execute(
            "UPDATE delivery SET next_attempt_at = now() + interval '1 hour'"
            " WHERE id > 'dlv_' || lpad('8', 26, '0')")
        later = await connection.fetchval("SELECT min(next_attempt_at) FROM delivery"
                                          " WHERE next_attempt_at > now()")
        rows, next_due = await queue.claim(connection, "me", 5, [], 15.0, 30.0)
        assert len(rows) == 5 and next_due == later
        rows, next_due = await queue.claim(connection, "me", 5, [], 15.0, 30.0, {})
        assert len(rows) == 3 and next_due == later
        rows, next_due = await queue.claim(connection, "me", 5, [], 15.0, 30.0)
        assert rows == [] and next_due == later


async def test_overlapping_claims_never_lease_what_the_gates_hand_back(
        client, admin, sink, start_dispatcher, monkeypatch, db_left_empty):
    """A backlog over many gated endpoints: one claim within allowances at a time, so no
    claimed delivery is handed back because its endpoint's gate was full."""
    handed_back: list[queue.PutBack] = []
    put_back = queue.put_back

    async def spy(connection, owner, items):
        handed_back.extend(items)
        await put_back(connection, owner, items)

    monkeypatch.setattr(queue, "put_back", spy)
    await make_source(client, admin, "shop")
    paths = [sink.path() for _ in range(12)]
    for path in paths:
        sink.respond(path, 200, delay=0.05)
        await make_endpoint(client, admin, sink.url(path), max_in_flight=2)
    for n in range(8):
        await post_event(client, "shop", {"n": n})
    # Routed before the dispatcher starts: the backlog is all due, for claims alone.
    from dispatch.routing import Router

    await Router().route_all()
    await start_dispatcher(concurrency=20)
    await wait_for_statuses("succeeded", 96, timeout=30)
    assert handed_back == []


async def test_a_delivery_its_gate_refuses_after_the_claim_is_announced_to_the_others(
        client, admin, sink, monkeypatch, db_left_empty):
    """Routing can fill an endpoint's gate while a claim is out. The claimed delivery goes
    back due, and the other dispatchers hear of it (`relay_due`): they may have room for it
    now, and this one's gate may stay full for as long as routing keeps it so."""
    from dispatch.routing import Router
    from dispatch.worker import Dispatcher
    from tests.servers import wait_until

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url(sink.path()), max_in_flight=1)
    await post_event(client, "shop")
    await Router().route_all()
    dispatcher = Dispatcher()
    real_claim = queue.claim

    async def claim_then_gate_fills(*args, **kwargs):
        result = await real_claim(*args, **kwargs)
        assert dispatcher.gates.gate(endpoint["id"], 1, None).try_acquire(0.0)
        return result

    monkeypatch.setattr(queue, "claim", claim_then_gate_fills)
    async with listening() as heard:
        assert await dispatcher.claim(1) == (1, [])
        await wait_until(lambda: heard.channels, timeout=5,
                         message="a relay_due notification")
    [row] = await wait_for_statuses("pending", 1)
    assert row.lease_owner is None and row.next_attempt_at is not None


def test_the_smallest_max_in_flight_leaves_out_resting_and_excluded_endpoints():
    from datetime import UTC, datetime

    from dispatch.endpoints import Target, Targets

    targets = Targets()
    assert targets.smallest_max_in_flight() == 0, "nothing known: every endpoint may limit"
    for endpoint_id, max_in_flight in (("ep_small", 2), ("ep_mid", 10), ("ep_big", 1000)):
        targets.remember(Target(
            id=endpoint_id, url="http://127.0.0.1:9/", headers={}, secret="whsec_x",
            previous_secret=None, previous_secret_expires_at=None, timeout=5.0,
            max_in_flight=max_in_flight, rate_limit=None, retry_schedule=[1.0],
            updated_at=datetime.now(UTC)))
    assert targets.smallest_max_in_flight() == 2
    assert targets.smallest_max_in_flight({"ep_small"}) == 10
    targets.note_resting("ep_small", True)
    assert targets.smallest_max_in_flight() == 10
    targets.note_resting("ep_mid", True)
    assert targets.smallest_max_in_flight() == 1000
    assert targets.smallest_max_in_flight({"ep_big"}) > 10**9, "nothing left to limit"
    targets.note_resting("ep_small", False)
    assert targets.smallest_max_in_flight() == 2

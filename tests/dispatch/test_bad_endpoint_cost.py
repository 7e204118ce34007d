"""Deliveries to an endpoint whose circuit is open, or that is disabled, cost no statement
each: routing leaves a disabled endpoint out and inserts an open circuit's deliveries
parked, claims never see them, and a probe that fails again leaves the backlog's rows
alone. Statements are counted on every connection the dispatcher takes from the pool."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch import queue
from tests.dispatch.conftest import (
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    unrouted,
)
from tests.servers import wait_until

EVENTS = 40


class StatementCounter:
    """Every statement the dispatcher's pooled connections run, by its first words."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()

    def log(self, record: Any) -> None:
        words = " ".join(record.query.split()).upper()
        if words.startswith("WITH DUE") or words.startswith("WITH CANDIDATE"):
            self.statements["claim"] += 1
        elif words.startswith("UPDATE DELIVERY D SET STATUS = 'RETRYING', LEASE_OWNER = NULL"):
            self.statements["lease_sweep"] += 1
        elif words.startswith("UPDATE DELIVERY SET NEXT_ATTEMPT_AT = NOW() WHERE ID IN ( SELECT (SELECT"):
            self.statements["circuit_upkeep"] += 1
        elif words.startswith("UPDATE DELIVERY D SET STATUS = CASE"):
            self.statements["put_back"] += 1
        elif words.startswith("INSERT INTO ATTEMPT"):
            self.statements["attempt"] += 1
        elif words.startswith("UPDATE DELIVERY"):
            self.statements["delivery_update"] += 1
        elif words.startswith("WITH MARKED"):
            self.statements["route"] += 1
        else:
            self.statements["other"] += 1

    def per_delivery(self) -> int:
        return sum(self.statements[kind] for kind in ("put_back", "attempt", "delivery_update"))


@pytest.fixture
def counted(monkeypatch) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    real = queue.pooled

    @contextlib.asynccontextmanager
    async def pooled_and_counted() -> AsyncIterator[Any]:
        async with real() as connection:
            connection.add_query_logger(counter.log)
            try:
                yield connection
            finally:
                connection.remove_query_logger(counter.log)

    for module in ("dispatch.queue", "dispatch.worker", "dispatch.settle"):
        monkeypatch.setattr(f"{module}.pooled", pooled_and_counted)
    yield counter


async def _routed() -> bool:
    return await unrouted() == 0


async def test_an_open_circuit_and_a_disabled_endpoint_cost_no_statement_per_delivery(
        client, admin, sink, start_dispatcher, counted):
    await make_source(client, admin, "shop")
    resting = await make_endpoint(client, admin, sink.url("/resting"))
    disabled = await make_endpoint(client, admin, sink.url("/disabled"))
    answer = await client.post(f"/api/v1/endpoints/{disabled['id']}/disable", headers=admin)
    assert answer.status_code == 200, answer.text
    opened = datetime.now(UTC)
    async with queue.pooled() as connection:
        await connection.execute(
            "UPDATE endpoint SET circuit_opened_at = $2, consecutive_failures = 10 "
            "WHERE id = $1", resting["id"], opened)

    dispatcher = await start_dispatcher(poll_interval=0.05)
    for n in range(EVENTS):
        await post_event(client, "shop", {"n": n})
    await wait_until(_routed, timeout=15, message="every event routed")
    claims_after_routing = counted.statements["claim"]
    await wait_until(lambda: counted.statements["claim"] >= claims_after_routing + 5,
                     timeout=15, message="five more claims")
    await dispatcher.stop()

    assert counted.per_delivery() == 0, counted.statements
    assert sink.count() == 0
    resting_rows = await deliveries_of(endpoint_id=resting["id"])
    disabled_rows = await deliveries_of(endpoint_id=disabled["id"])
    assert len(resting_rows) == EVENTS
    assert disabled_rows == [], "a disabled endpoint is not routed to (its backlog is parked)"
    for row in resting_rows:  # parked until the circuit half-opens and lends one probe
        assert row.status == "pending" and row.attempts_count == 0
        assert row.next_attempt_at is None


async def _half_open_with_backlog(client, admin, url: str, *, parked: bool = False,
                                   **fields: Any) -> dict:
    """An endpoint whose circuit opened an hour ago (half-open now), and EVENTS events
    posted for it; `parked`: its backlog is known parked (`circuit_parked`)."""
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, url, **fields)
    async with queue.pooled() as connection:
        await connection.execute(
            "UPDATE endpoint SET circuit_opened_at = now() - interval '1 hour',"
            " consecutive_failures = 10, circuit_parked = $2 WHERE id = $1", endpoint["id"],
            parked)
    for n in range(EVENTS):
        await post_event(client, "shop", {"n": n})
    return endpoint


async def test_a_half_open_circuit_lends_one_probe_and_rests_the_others(
        client, admin, sink, start_dispatcher, counted):
    """After the cool-down, one delivery probes; while it is out the claims of every
    dispatcher (a second one too, which does not know of the probe) pass over the
    endpoint's other deliveries: no lease, no put-back each."""
    sink.respond("/slow", delay=3.0)
    await _half_open_with_backlog(client, admin, sink.url("/slow"), timeout_seconds=10)

    first = await start_dispatcher(poll_interval=0.05)
    await wait_until(lambda: sink.count("/slow") == 1, timeout=15, message="the probe")
    claims = counted.statements["claim"]
    put_backs = counted.statements["put_back"]
    second = await start_dispatcher(poll_interval=0.05)
    await wait_until(lambda: counted.statements["claim"] >= claims + 10, timeout=15,
                     message="ten more claims")
    assert counted.statements["put_back"] == put_backs, counted.statements
    assert sink.count("/slow") == 1
    await second.stop()
    await first.stop()


async def test_a_probe_that_fails_again_rewrites_no_row_of_the_backlog(
        client, admin, sink, start_dispatcher):
    """The scale property of parking: a circuit failing its probe every cool-down costs the
    probe's row, not one row per waiting delivery (each row's xmin says whether it was
    written)."""
    from dispatch.models import Endpoint
    from dispatch.routing import Router

    sink.respond("/dead", *([500] * 50))
    endpoint = await _half_open_with_backlog(client, admin, sink.url("/dead"), parked=True)
    await Router().route_all()

    async def versions() -> dict[str, str]:
        async with queue.pooled() as connection:
            return {row["id"]: row["xmin"] for row in await connection.fetch(
                "SELECT id, xmin::text FROM delivery WHERE endpoint_id = $1", endpoint["id"])}

    before = await versions()
    assert len(before) == EVENTS
    assert all(row.next_attempt_at is None for row in await deliveries_of(
        endpoint_id=endpoint["id"])), "routed parked: the circuit is open"

    await start_dispatcher(poll_interval=0.05)

    async def reopened() -> bool:
        row = await Endpoint.get(id=endpoint["id"])
        return (row.circuit_opened_at is not None
                and row.circuit_opened_at > datetime.now(UTC) - timedelta(minutes=1))

    await wait_until(reopened, timeout=15, message="the probe to fail and reopen the circuit")
    assert sink.count("/dead") == 1
    after = await versions()
    written = {delivery for delivery in before if after[delivery] != before[delivery]}
    assert len(written) == 1, written
    rows = {row.id: row for row in await deliveries_of(endpoint_id=endpoint["id"])}
    (probe,) = written
    assert rows[probe].attempts_count == 1 and rows[probe].next_attempt_at is None
    assert all(row.next_attempt_at is None for row in rows.values())


async def test_a_black_hole_before_its_circuit_opens_costs_no_claim_per_delivery(
        client, admin, sink, start_dispatcher, counted):
    """A black hole beside a healthy endpoint, before any of its requests has timed out
    (so before its circuit can open): once its gate has been full and silent for a
    second, its growing backlog wakes no claim, neither through `relay_due` nor through
    the healthy endpoint's finished sends. Without that, each of those sends woke a
    claim that walked the whole backlog to find nothing it could send."""
    from dispatch.gates import SILENT_AFTER

    await make_source(client, admin, "shop")
    sink.respond("/hole", 200, hang=True)
    await make_endpoint(client, admin, sink.url("/hole"), max_in_flight=2)
    await make_endpoint(client, admin, sink.url("/fine"))
    dispatcher = await start_dispatcher(poll_interval=1.0, shutdown_grace=0.5)
    for n in range(4):  # two in flight, two in line: the black hole's gate is full
        await post_event(client, "shop", {"n": n})
    await wait_until(lambda: sink.count("/hole") == 2 and sink.count("/fine") == 4,
                     message="the black hole's gate full, the first events delivered")
    await wait_until(lambda: dispatcher.gates.silent(next(iter(dispatcher.behind)),
                                                     time.monotonic()),
        timeout=SILENT_AFTER + 5, message="the black hole silent")
    claims = counted.statements["claim"]
    for n in range(4, 44):
        await post_event(client, "shop", {"n": n})
    await wait_until(lambda: sink.count("/fine") == 44, message="the healthy deliveries")
    # 40 healthy sends ended, 40 deliveries left due for the black hole: a claim per poll
    # (1 or 2 here), not one per finished send (9 before, the sends settling in batches).
    assert counted.statements["claim"] - claims <= 4, counted.statements
    assert sink.count("/hole") == 2


async def test_an_open_circuit_no_longer_puts_the_claims_on_the_dearer_statement(
        client, admin, sink, start_dispatcher):
    """An endpoint with a small `max_in_flight` makes every claim larger than that count
    each endpoint's rows (the claim within allowances, about twice the plain claim's cost
    per row). Once its circuit has opened, its backlog is parked and it cannot take
    rows from a claim: the claims go back to the plain statement."""
    await make_source(client, admin, "shop")
    sink.respond("/down", 500)
    down = await make_endpoint(client, admin, sink.url("/down"), max_in_flight=2)
    await make_endpoint(client, admin, sink.url("/fine"), max_in_flight=1000)
    dispatcher = await start_dispatcher(poll_interval=0.05, circuit_threshold=2)
    await post_event(client, "shop", {"n": 0})
    await wait_until(lambda: sink.count("/fine") == 1, message="the first event delivered")
    assert dispatcher.targets.get(down["id"]) is not None
    allowances, _ = dispatcher._allowances(50)
    assert allowances is not None, "a 2-request endpoint limits a 50-row claim"

    await post_event(client, "shop", {"n": 1})
    await wait_until(lambda: down["id"] in dispatcher.targets.resting,
                     message="the dispatcher to hear that the circuit opened")
    allowances, _ = dispatcher._allowances(50)
    assert allowances is None, "an endpoint resting its circuit limits no claim"
    async with queue.pooled() as connection:
        assert await connection.fetchval(
            "SELECT circuit_opened_at IS NOT NULL FROM endpoint WHERE id = $1", down["id"])

"""A filter's work per event is bounded: a huge array in an unauthenticated body against a
long `$in` list gives up (no match, a log line saying why) instead of freezing routing,
and the process's other tasks keep running while such events are routed."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from kernel.filters import matches_filter, parse_document
from tests.dispatch.conftest import make_endpoint, make_source, post_event, unrouted
from tests.servers import wait_until

IN_100 = {"data.tags": {"$in": [f"tag-{n}" for n in range(100)]}}


def _wide_body() -> bytes:
    """Just under 1 MiB: a 500,000-element array of small numbers."""
    return json.dumps({"data": {"tags": [0] * 500_000}}, separators=(",", ":")).encode()


def test_a_huge_array_against_a_long_in_list_gives_up_within_its_budget():
    from kernel.filters import MAX_VISITS, FilterBudget

    document = parse_document(_wide_body())
    budget = FilterBudget()
    assert matches_filter(IN_100, document, budget) is False
    assert budget.exhausted
    assert budget.spent <= MAX_VISITS + 500_001


def test_an_array_within_the_budget_is_still_searched_whole():
    from kernel.filters import FilterBudget

    document = {"data": {"tags": [*range(10_000), "tag-99"]}}
    budget = FilterBudget()
    assert matches_filter(IN_100, document, budget) is True
    assert not budget.exhausted


def test_in_keeps_json_equality():
    assert matches_filter({"a": {"$in": [1]}}, {"a": 1.0})
    assert not matches_filter({"a": {"$in": [1]}}, {"a": True})
    assert not matches_filter({"a": {"$in": [True]}}, {"a": 1})
    assert not matches_filter({"a": {"$in": ["1"]}}, {"a": 1})
    assert matches_filter({"a": {"$in": [None]}}, {"a": None})
    assert matches_filter({"a": {"$in": [[1, 2]]}}, {"a": [1, 2]})
    assert matches_filter({"a": {"$in": [{"b": 1}]}}, {"a": [{"b": 1}, 3]})
    assert not matches_filter({"a": {"$nin": [2, 3]}}, {"a": [1, 2]})
    assert matches_filter({"a": {"$contains": 2}}, {"a": [1, 2]})
    assert not matches_filter({"a": {"$contains": [1, 2]}}, {"a": [1, 2]})


async def test_routing_costly_events_keeps_the_loop_responsive(client, admin, sink,
                                                              start_dispatcher, caplog):
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/f"), filter=IN_100)
    body = _wide_body()
    for _ in range(4):
        await post_event(client, "shop", body)


    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def all_routed() -> bool:
        return await unrouted() == 0

    ticking = asyncio.create_task(ticker())
    with caplog.at_level(logging.WARNING, logger="relay.dispatch"):
        await start_dispatcher()
        await wait_until(all_routed, timeout=30, message="the events to be routed")
    stop.set()
    await ticking
    assert max(gaps) < 1.0, f"the loop stalled {max(gaps):.2f} s"
    assert sink.count("/f") == 0
    notes = [record.getMessage() for record in caplog.records
             if endpoint["id"] in record.getMessage()]
    assert len(notes) == 4 and "filter gave up" in notes[0]

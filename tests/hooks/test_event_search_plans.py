"""The event and delivery logs' statements walk indexes and examine a bounded number of rows
on a big table: no sequential scan, no sort of the whole table."""

from __future__ import annotations

import re
import time

from dispatch import delivery_search
from dispatch.queue import pooled
from hooks import event_search
from hooks.event_search import EventQuery, candidate_sql, search_events

ROWS = 100_000
FILL_EVENTS = f"""
INSERT INTO event (id, source_slug, event_type, received_at, method, query, headers,
                   content_type, size, body)
SELECT 'evt_' || lpad(n::text, 26, '0'), CASE WHEN n % 4 = 0 THEN 'bank' ELSE 'shop' END,
       CASE WHEN n % 3 = 0 THEN 'order.paid' ELSE 'invoice.sent' END,
       now() - make_interval(secs => {ROWS} - n), 'POST', '', '{{}}', 'application/json', 2,
       '{{}}'
FROM generate_series(1, {ROWS}) AS n
"""
FILL_DELIVERIES = f"""
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      created_at)
SELECT 'dlv_' || lpad(n::text, 26, '0'), 'evt_' || lpad(n::text, 26, '0'), 'ep_' || (n % 7),
       CASE WHEN n % 5000 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 0, now()
FROM generate_series(1, {ROWS}) AS n
"""


async def explain(connection, sql: str, values: list) -> str:
    rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values)
    return "\n".join(row[0] for row in rows)


async def test_searches_use_indexes_and_bounded_windows(db):
    async with pooled() as connection:
        await connection.execute(FILL_EVENTS)
        await connection.execute(FILL_DELIVERIES)
        await connection.execute("ANALYZE event")
        await connection.execute("ANALYZE delivery")
        # (A time range prunes partitions by id; the filled ids here are not time-based.)
        for query in (EventQuery(source="shop"), EventQuery(event_type="order.paid"),
                      EventQuery(source="bank", status="failed")):
            sql, values = candidate_sql(query, None, event_search.CANDIDATES_PER_PAGE)
            plan = await explain(connection, sql, values)
            assert "Seq Scan" not in plan, plan
            assert not re.search(r"^\s*(->\s+)?Sort\s+\(", plan, re.M), plan

    started = time.perf_counter()
    page = await search_events(EventQuery(status="failed"), 50, None)
    first_page = time.perf_counter() - started
    assert page.examined <= event_search.CANDIDATES_PER_PAGE
    assert page.next_cursor_id is not None, "the window ran out before the table did"
    started = time.perf_counter()
    deliveries = await delivery_search.search_deliveries(
        delivery_search.DeliveryQuery(endpoint="ep_3", statuses=("failed",)), 50, None)
    delivery_page = time.perf_counter() - started
    print(f"\n{ROWS} events: a status-filtered page examined {page.examined} candidates in "
          f"{first_page * 1000:.0f} ms ({len(page.rows)} matches); an endpoint+status delivery "
          f"page in {delivery_page * 1000:.0f} ms ({len(deliveries.rows)} matches)")

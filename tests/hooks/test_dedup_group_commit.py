"""Dedup sources are group-committed: duplicates inside one write, across writes, across
processes (another connection holding the key), a database lost in the middle of a write,
and a lookup that stays an index probe however many events are stored."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import asyncpg

from hooks import store
from hooks.models import Event
from hooks.store import NewEvent
from kernel.database import is_database_unavailable
from kernel.ids import new_id
from tests.hooks.fixtures import RawQueries


def _event(key: str | None, n: int = 0, source: str = "src_dedup") -> NewEvent:
    return NewEvent(
        source_id=source, source_slug="dedup", event_type="t", dedup_key=key, method="POST",
        query="", headers={"content-type": "application/json"},
        content_type="application/json", body=b'{"n": %d}' % n,
    )


async def test_fifty_posts_of_one_key_at_once_give_one_202(client, make_source, event_count):
    await make_source("burst", dedup={"header": "x-id"})
    answers = await asyncio.gather(*[
        client.post("/in/burst", content=b'{"a": 1}', headers={"x-id": "same"})
        for _ in range(50)
    ])
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 49 + [202]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert all(answer.json().get("duplicate") for answer in answers if answer.status_code == 200)
    assert await event_count() == 1


async def test_duplicates_inside_one_write_store_the_first_and_answer_its_id(db):
    writes_before = store._group_commit.writes
    results = await asyncio.gather(*(
        store.store_event(_event(f"k{n % 5}", n), 60) for n in range(40)
    ))
    assert store._group_commit.writes - writes_before <= store.GROUP_MAX_IN_FLIGHT + 1
    winners = [result for result in results if not result.duplicate]
    assert len(winners) == 5
    by_key = {f"k{n % 5}": [] for n in range(5)}
    for n, result in enumerate(results):
        by_key[f"k{n % 5}"].append(result.id)
    assert all(len(set(ids)) == 1 for ids in by_key.values())
    stored = await Event.filter(source_id="src_dedup").order_by("id")
    assert sorted(event.dedup_key for event in stored) == [f"k{n}" for n in range(5)]
    # The first of each key won: its body is the one with the lowest n.
    assert {event.dedup_key: json.loads(event.body)["n"] for event in stored} == {
        f"k{n}": n for n in range(5)}


async def test_mixed_writes_keep_events_without_keys(db):
    results = await asyncio.gather(*(
        store.store_event(_event("dup" if n % 2 else None, n), 60) for n in range(20)
    ))
    assert sum(not result.duplicate for result in results) == 11
    assert await Event.filter(source_id="src_dedup").count() == 11


async def test_duplicates_across_writes(db):
    first = await store.store_event(_event("across", 1), 60)
    later = await asyncio.gather(*(store.store_event(_event("across", n), 60) for n in range(10)))
    assert not first.duplicate
    assert {result.id for result in later} == {first.id}
    assert all(result.duplicate for result in later)


async def test_published_events_dedup_apart_from_sources(db):
    published = await store.store_event(_event("k", source=None), 60)  # type: ignore[arg-type]
    from_source = await store.store_event(_event("k"), 60)
    again = await store.store_event(_event("k", source=None), 60)  # type: ignore[arg-type]
    assert not published.duplicate and not from_source.duplicate
    assert again.duplicate and again.id == published.id


async def test_a_key_held_by_another_process_waits_and_then_answers_its_event(db):
    """Another process's transaction holds the key's lock and inserts the event; ours
    waits for the lock and, once that transaction commits, finds that event."""
    other = await asyncpg.connect(os.environ["RELAY_DATABASE_URL"])
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(store._LOCK_KEYS, [store._lock_key(("src_dedup", "held"))])
        theirs = new_id("evt")
        await other.execute(
            "INSERT INTO event (id, source_id, source_slug, dedup_key, received_at, method,"
            " query, headers, content_type, size, body) VALUES ($1, 'src_dedup', 'dedup',"
            " 'held', now(), 'POST', '', '{}', '', 2, '{}')", theirs)
        ours = asyncio.ensure_future(store.store_event(_event("held"), 60))
        watcher = await asyncpg.connect(os.environ["RELAY_DATABASE_URL"])
        try:
            await _wait_for_a_lock_waiter(watcher)
        finally:
            await watcher.close()
        assert not ours.done()
        await transaction.commit()
        result = await asyncio.wait_for(ours, 10)
        assert result.duplicate and result.id == theirs
    finally:
        await other.close()


async def _wait_for_a_lock_waiter(connection: asyncpg.Connection) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND wait_event = 'advisory'"):
        assert asyncio.get_running_loop().time() < deadline, "no write waited for the lock"
        await asyncio.sleep(0.01)


async def test_database_lost_in_the_middle_of_a_write_fails_every_row_and_stores_none(db):
    url = os.environ["RELAY_DATABASE_URL"]
    holder = await asyncpg.connect(url)
    watcher = await asyncpg.connect(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", store._lock_key(("src_dedup", "k0")))
        writes = asyncio.gather(*(store.store_event(_event(f"k{n}", n), 60) for n in range(10)),
                                return_exceptions=True)
        await _wait_for_a_lock_waiter(watcher)
        await watcher.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'")
        results = await asyncio.wait_for(writes, 10)
        assert all(isinstance(result, BaseException) for result in results), results
        assert all(is_database_unavailable(result) for result in results)
        assert await watcher.fetchval(
            "SELECT count(*) FROM event WHERE source_id = 'src_dedup'") == 0
    finally:
        await holder.close()
        await watcher.close()
    retried = await asyncio.gather(*(store.store_event(_event(f"k{n}", n), 60) for n in range(10)))
    assert not any(result.duplicate for result in retried)
    assert await Event.filter(source_id="src_dedup").count() == 10


async def test_the_lookup_is_an_index_probe_of_the_window(db):
    """Equality on source and key (never IS NOT DISTINCT FROM) in each partition read:
    PostgreSQL probes `event_dedup_idx` and does not walk the events of the window."""
    url = os.environ["RELAY_DATABASE_URL"]
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO event (id, source_id, source_slug, dedup_key, received_at, method,"
            " query, headers, content_type, size, body)"
            " SELECT 'evt_' || lpad(to_hex(g), 26, '0'), 'src_dedup', 'dedup', 'key-' || g,"
            " now(), 'POST', '', '{}', '', 2, '{}' FROM generate_series(1, 20000) AS g")
        await connection.execute("ANALYZE event")
        since = datetime.now(UTC) - timedelta(hours=24)
        read = await store.EventPartitions().covering(RawQueries(connection), since)
        for source in ("src_dedup", None):
            plan = await connection.fetchval(
                "EXPLAIN (FORMAT JSON) " + store.find_originals_sql(read),
                [0], [source], ["key-7"], [since], [None], ["t"])
            text = json.dumps(plan)
            # The rows are in the default partition (made-up ids); the day partitions are
            # empty, and scanning an empty table costs nothing.
            assert not _seq_scans(json.loads(plan)[0]["Plan"], {"event", "event_default"}), text
            names = {row["relname"] for row in await connection.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'event_dedup_idx'::regclass")} | {"event_dedup_idx"}
            conditions = [condition for name in names for condition in _index_conditions(
                json.loads(plan)[0]["Plan"], name)]
            # Probes in each branch (sources; published events; one per partition read), both
            # leading columns bound.
            assert any("source_id)::text = q.source_id" in c for c in conditions), conditions
            assert any("source_id IS NULL" in c for c in conditions), conditions
            assert all("source_id" in c and "dedup_key" in c for c in conditions), conditions
    finally:
        await connection.close()


def _seq_scans(node: dict, tables: set[str]) -> list[str]:
    found = [node["Relation Name"]] if (node.get("Node Type") == "Seq Scan"
                                        and node.get("Relation Name") in tables) else []
    for child in node.get("Plans", []):
        found += _seq_scans(child, tables)
    return found


def _index_conditions(node: dict, index: str) -> list[str]:
    found = [node.get("Index Cond", "")] if node.get("Index Name") == index else []
    for child in node.get("Plans", []):
        found += _index_conditions(child, index)
    return found


async def test_the_duplicate_lookup_is_not_planned_per_write(db):
    """Each write of a dedup batch runs its lookup on the generic plan (planning the
    lookup over every partition cost more than running it)."""
    from tortoise import connections

    for n in range(8):
        await store.store_event(_event(f"plan{n}", n), 60)
    plans = []
    pool = connections.get("default")._pool
    for holder in pool._holders:
        if holder._con is not None and not holder._con.is_closed():
            plans += await holder._con.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE $1", "%SELECT q.i, found.id, found.same%")
    assert plans, "no connection prepared the lookup"
    assert sum(row["custom_plans"] for row in plans) == 0, plans
    assert sum(row["generic_plans"] for row in plans) >= 8, plans


async def test_every_stored_event_waits_in_the_routing_queue(db):
    stored = [await store.store_event(_event(f"q{n}", n), 60) for n in range(3)]
    stored.append(await store.store_event(_event(None, 9), 60))
    url = os.environ["RELAY_DATABASE_URL"]
    connection = await asyncpg.connect(url)
    try:
        queued = await connection.fetch(
            "SELECT event_id, event_type, source_slug FROM event_unrouted ORDER BY event_id")
    finally:
        await connection.close()
    assert [(row["event_id"], row["event_type"], row["source_slug"]) for row in queued] == [
        (event.id, "t", "dedup") for event in sorted(stored, key=lambda e: e.id)]

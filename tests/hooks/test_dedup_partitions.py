"""The duplicate lookup of ingest probes `event_dedup_idx`, whatever the statistics of a
partition said when its plan was made (a connection keeps its plan for as long as it
lives)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from dispatch.queue import pooled
from hooks.store import _LOCK_KEYS, EventPartitions, find_originals_sql
from kernel import partitions
from kernel.ids import id_boundary
from tests.hooks.fixtures import RawQueries

EVENTS_OF_TODAY = """
INSERT INTO event (id, source_id, source_slug, dedup_key, received_at, method, query,
                   headers, content_type, size, body)
SELECT $1 || lpad(n::text, 15, '0'), 'src_1', 'one', 'key-' || $1 || n, now(), 'POST', '',
       '{}', '', 2, '{}'
FROM generate_series(1, $2) AS n
"""


async def test_plans_made_while_the_day_was_empty_probe_the_index_once_it_is_full(db):
    """A plan kept from a moment when today's partition held 5 analyzed events must not
    read it whole once it holds 20,000: every webhook with a dedup id would read every
    event of the day."""
    today = partitions.partition_name("event", partitions.today())
    since = datetime.now(UTC) - timedelta(hours=24)
    async with pooled() as connection:
        read = await EventPartitions().covering(RawQueries(connection), since)
        assert today in read and read[-1] == "event_default", read
        await connection.execute(
            f"PREPARE originals(int[], text[], text[], timestamptz[], bytea[], text[]) AS "
            f"{find_originals_sql(read)}")
        execute = ("EXECUTE originals(ARRAY[0, 1], ARRAY['src_1', NULL], ARRAY['key-x', 'k'],"
                   f" ARRAY['{since.isoformat()}', '{since.isoformat()}']::timestamptz[],"
                   " ARRAY[NULL, NULL]::bytea[], ARRAY[NULL, NULL]::text[])")
        first = id_boundary("evt", time.time())
        await connection.execute(f"TRUNCATE {today}")
        await connection.execute(EVENTS_OF_TODAY, first + "a", 5)
        await connection.execute(f"ANALYZE {today}")
        try:
            async with connection.transaction():
                await connection.fetch(_LOCK_KEYS, [1])
                await connection.execute(f"EXPLAIN {execute}")
            await connection.execute(EVENTS_OF_TODAY, first + "b", 20000)
            async with connection.transaction():
                await connection.fetch(_LOCK_KEYS, [1])
                rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {execute}")
            kept = "\n".join(row[0] for row in rows)
            assert f"Seq Scan on {today}" not in kept, kept
            assert f"Bitmap Heap Scan on {today}" not in kept, kept
            probes = [line for line in kept.splitlines() if f" on {today} " in line]
            assert probes and all(f"{today}_source_id_dedup_key" in line for line in probes), kept
            # One probe per branch, a handful of buffers: not the 20,000 events of the day.
            assert "Rows Removed by Filter" not in kept, kept
        finally:
            await connection.execute("DEALLOCATE originals")


async def test_the_lookup_reads_the_days_of_the_window_and_the_default_partition(db):
    async with pooled() as connection:
        listed = EventPartitions()
        today = partitions.today()
        yesterday = partitions.partition_name("event", today - timedelta(days=1))
        await partitions.create_partition(connection, "event", today - timedelta(days=1))
        try:
            read = await listed.covering(RawQueries(connection),
                                         partitions.day_start(today) + timedelta(hours=1))
            assert read[0] == partitions.partition_name("event", today), read
            assert yesterday not in read
            assert read[-1] == "event_default"
            earlier = await listed.covering(
                RawQueries(connection), partitions.day_start(today) + timedelta(seconds=0.5))
            # An id and its received_at come from two clock reads: the day before is read
            # too when the window starts within a second of midnight.
            assert earlier[0] == yesterday, earlier
        finally:
            await connection.execute(f"DROP TABLE {yesterday}")


async def test_a_partition_dropped_after_it_was_listed_costs_no_webhook(db):
    """Retention may drop a day the process listed a minute ago (a window longer than the
    retention): the write lists the partitions again and goes on."""
    from hooks import store
    from hooks.store import NewEvent

    def event(key: str) -> NewEvent:
        return NewEvent(source_id="src_drop", source_slug="drop", event_type="t",
                        dedup_key=key, method="POST", query="", headers={},
                        content_type="application/json", body=b"{}")

    day = partitions.today() - timedelta(days=1)
    async with pooled() as connection:
        await partitions.create_partition(connection, "event", day)
    store._event_partitions.forget()
    first = await store.store_event(event("a"), 3 * 24 * 3600)
    async with pooled() as connection:
        await connection.execute(f"DROP TABLE {partitions.partition_name('event', day)}")
    again = await store.store_event(event("a"), 3 * 24 * 3600)
    other = await store.store_event(event("b"), 3 * 24 * 3600)
    assert again.duplicate and again.id == first.id
    assert not other.duplicate

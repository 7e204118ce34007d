"""Migration 0005 moves a database made by the previous release to daily partitions
without losing or changing a row; 0012 then lists the events not routed yet in
`event_unrouted` and drops `event.routed_at`."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dispatch.routing import _ROUTE
from kernel import partitions
from kernel.ids import _encode
from tests.ops.conftest import relay_env, run

TABLES = ("event", "delivery", "attempt", "rejected_request")
NOW = datetime.now(UTC).replace(microsecond=0)
_MIGRATE_TO = ("import asyncio, django; django.setup(); "
               "from relay.migrations_runner import apply_migrations; "
               "asyncio.run(apply_migrations(target='relay.0003_endpoint_kind'))")


def _id(prefix: str, moment: datetime, n: int) -> str:
    return f"{prefix}_{_encode(int(moment.timestamp() * 1000), 10)}{_encode(n, 16)}"


@pytest.fixture
async def old_database(database):
    """A database of its own, migrated to 0003 (the release before partitions)."""
    session_url = os.environ["RELAY_DATABASE_URL"]
    parts = urlsplit(session_url)
    url = urlunsplit(parts._replace(path="/relay_migration_test"))
    admin = await asyncpg.connect(session_url)
    await admin.execute("DROP DATABASE IF EXISTS relay_migration_test")
    await admin.execute("CREATE DATABASE relay_migration_test")
    env = relay_env(RELAY_DATABASE_URL=url)
    code, out, err = await run([sys.executable, "-c", _MIGRATE_TO], env)
    assert code == 0, err
    assert "0003_endpoint_kind" in out and "0005" not in out
    try:
        yield url, env
    finally:
        await admin.execute("DROP DATABASE IF EXISTS relay_migration_test")
        await admin.close()


async def _fill(connection: asyncpg.Connection) -> None:
    moments = [NOW - timedelta(days=3, hours=5), NOW - timedelta(days=1), NOW]
    for n, moment in enumerate(moments * 40):
        event_id = _id("evt", moment, n)
        await connection.execute(
            "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
            " method, query, headers, content_type, size, body, routed_at) VALUES ($1, 'src_a',"
            " 'a', 'order.paid', $2, $3, 'POST', 'x=1', '{\"h\": [1, 2]}', 'application/json',"
            " 3, $4, $5)", event_id, f"k{n}", moment, bytes([n % 256, 0, 255]),
            moment if n % 2 else None)
        delivery_id = _id("dlv", moment, n)
        await connection.execute(
            "INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,"
            " next_attempt_at, created_at, retry_base) VALUES ($1, $2, 'ep_a', $3, 1, $4, $4, 2)",
            delivery_id, event_id, ("pending", "succeeded", "retrying")[n % 3], moment)
        await connection.execute(
            "INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms,"
            " status_code, request_headers, response_headers, response_body) VALUES ($1, $2,"
            " 'ep_a', 1, $3, 12.5, 500, '{}', '{\"a\": \"b\"}', 'nope')",
            _id("att", moment, n), delivery_id, moment)
        await connection.execute(
            "INSERT INTO rejected_request (id, source_id, received_at, reason, headers,"
            " body_preview, size) VALUES ($1, 'src_a', $2, 'bad signature', '{}', $3, 3)",
            _id("rej", moment, n), moment, b"abc")
    await connection.execute(  # an id no clock made: it must survive too
        "INSERT INTO event (id, received_at, method, query, headers, content_type, size, body)"
        " VALUES ('evt_handmade', now(), 'POST', '', '{}', '', 0, ''::bytea)")


async def _snapshot(connection: asyncpg.Connection) -> dict[str, list[tuple]]:
    """Every row of every table, without `event.routed_at` (0012 drops it)."""
    return {table: [tuple(value for key, value in row.items() if key != "routed_at")
                    for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY id")]
            for table in TABLES}


async def _indexes(connection: asyncpg.Connection) -> dict[str, set[str]]:
    return {table: {row["indexname"] for row in await connection.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = $1", table)} for table in TABLES}


async def test_migration_keeps_every_row_and_the_tables_keep_working(old_database):
    url, env = old_database
    connection = await asyncpg.connect(url)
    try:
        await _fill(connection)
        before = await _snapshot(connection)
        not_routed = {row["id"] for row in await connection.fetch(
            "SELECT id FROM event WHERE routed_at IS NULL")}
        assert len(not_routed) == 61
        indexes_before = await _indexes(connection)
        assert len(before["event"]) == 121

        code, out, err = await run([sys.executable, "manage.py", "migrate"], env)
        assert code == 0, err
        assert "applying relay.0005_partitions" in out
        assert "applying relay.0012_unrouted_queue" in out

        assert await _snapshot(connection) == before
        assert {row["event_id"] for row in await connection.fetch(
            "SELECT event_id FROM event_unrouted")} == not_routed
        indexes_before["delivery"].add("delivery_open_event_idx")
        indexes_before["event"].discard("event_unrouted_idx")  # replaced by the queue in 0012
        indexes_before["attempt"].discard("attempt_endpoint_idx")  # dropped by 0011
        indexes_before["delivery"].discard("delivery_lease_idx")  # dropped by 0016
        assert await _indexes(connection) == indexes_before
        for table in TABLES:
            assert await partitions.is_partitioned(connection, table)
            days = {part.day for part in await partitions.day_partitions(connection, table)}
            assert (NOW - timedelta(days=3, hours=5)).date() in days
            assert NOW.date() + timedelta(days=partitions.DAYS_AHEAD) in days
        assert await connection.fetchval(
            "SELECT tableoid::regclass::text FROM event WHERE id = 'evt_handmade'"
        ) == "event_default"
        assert await connection.fetchval(
            "SELECT count(*) FROM event_default") == 1

        # Inserts, routing, claiming and settling on the partitioned tables.
        new_event = _id("evt", datetime.now(UTC), 999)
        await connection.execute(
            "INSERT INTO event (id, source_slug, received_at, method, query, headers,"
            " content_type, size, body) VALUES ($1, 'a', now(), 'POST', '', '{}', '', 0,"
            " ''::bytea)", new_event)
        await connection.execute("INSERT INTO event_unrouted (event_id, source_slug, received_at)"
                                 " VALUES ($1, 'a', now())", new_event)
        new_delivery = _id("dlv", datetime.now(UTC), 999)
        routed = await connection.fetchrow(_ROUTE, [new_event], [new_delivery], [new_event],
                                           ["ep_a"], [0], None, 15.0, 30.0, [])
        assert (routed["events"], routed["deliveries"]) == (1, 1)
        claimed = await connection.fetchval(
            "UPDATE delivery SET status = 'delivering', lease_owner = 't',"
            " lease_expires_at = now() + interval '1 minute' WHERE id = ("
            " SELECT id FROM delivery WHERE status IN ('pending', 'retrying')"
            " AND id = $1 FOR UPDATE SKIP LOCKED) RETURNING id",
            new_delivery)
        assert claimed == new_delivery
        await connection.execute(
            "INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms,"
            " request_headers, response_headers, response_body) VALUES ($1, $2, 'ep_a', 1,"
            " now(), 1, '{}', '{}', '')", _id("att", datetime.now(UTC), 999), new_delivery)
        await connection.execute(
            "UPDATE delivery SET status = 'succeeded', completed_at = now() WHERE id = $1",
            new_delivery)
        assert await connection.fetchval(
            "SELECT tableoid::regclass::text FROM delivery WHERE id = $1", new_delivery
        ) == partitions.partition_name("delivery", datetime.now(UTC).date())

        code, out, err = await run([sys.executable, "manage.py", "migrate"], env)
        assert code == 0, err
        assert "No migrations to apply" in out
    finally:
        await connection.close()

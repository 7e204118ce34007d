"""Partition `event`, `delivery`, `attempt` and `rejected_request` by day (range of ids).

Who owns what: hooks owns `event` and `rejected_request`, dispatch owns `delivery` and
`attempt`; the day partitions themselves are kernel/partitions.py's.

For each table, in one transaction on a connection of its own (no 30 s statement
timeout, and a failure leaves the database as it was): rename the table aside, create
the partitioned table with the same columns, its default partition and one partition
for every day from the oldest stored id to `DAYS_AHEAD` days from now, copy the rows
day by day (progress printed), check the count, recreate the primary key and every
index under its old name, drop the old table. Running it again after a crash between
the copy and Tortoise recording the migration is a no-op.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from tortoise import migrations
from tortoise.migrations import operations as ops

from kernel import partitions
from relay.migrations_runner import report_progress

_TIMEOUT = partitions.LONG_STATEMENT_TIMEOUT

_NEW_INDEXES = {
    "delivery": [
        # The events that still have a delivery in flight, wherever it is stored: what a
        # day's drop must keep. Holds only the rows in flight, so it stays small.
        "CREATE INDEX delivery_open_event_idx ON delivery (event_id)"
        " WHERE status IN ('pending', 'retrying', 'delivering')",
    ],
}


async def _convert(connection: asyncpg.Connection, table: str) -> None:
    if await partitions.is_partitioned(connection, table):
        return
    old = f"{table}_unpartitioned"
    indexes = [row["indexdef"] for row in await connection.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = $1 AND indexname <> $2 ORDER BY indexname", table, f"{table}_pkey")]
    comment = await connection.fetchval("SELECT obj_description($1::regclass, 'pg_class')",
                                        table)
    total = await connection.fetchval(f"SELECT count(*) FROM {table}",  # noqa: S608
                                      timeout=_TIMEOUT)
    bounds = await connection.fetchrow(f"SELECT min(id) AS low, max(id) AS high FROM {table}")  # noqa: S608

    await connection.execute(f"ALTER TABLE {table} RENAME TO {old}")
    await connection.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    for name in await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = $1 AND indexname <> $2", old, f"{old}_pkey"):
        await connection.execute(f"DROP INDEX {name['indexname']}")
    await connection.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        f" INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (id)")
    if comment:
        await connection.execute(f"COMMENT ON TABLE {table} IS {partitions._quote(comment)}")
    await connection.execute(
        f"CREATE TABLE {partitions.default_name(table)} PARTITION OF {table} DEFAULT")

    today = partitions.today()
    first = last = today
    for value in (bounds["low"], bounds["high"]):
        day = partitions.day_of_id(value) if value else None
        # Ids from before 2020 or after tomorrow were not made by the clock: default partition.
        if day is not None and day.year >= 2020 and day <= today + timedelta(days=1):
            first, last = min(first, day), max(last, day)
    last = max(last, today + timedelta(days=partitions.DAYS_AHEAD))

    copied = shown = 0
    say_each = total >= 100_000
    if say_each:
        report_progress(f"    {table}: copying {total:,} rows into daily partitions ...")
    for day in partitions.days(first, last):
        name = partitions.partition_name(table, day)
        low, high = partitions.day_bounds(table, day)
        await connection.execute(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM"
            f" ({partitions._quote(low)}) TO ({partitions._quote(high)})")
        result = await connection.execute(
            f"INSERT INTO {name} SELECT * FROM {old} WHERE id >= $1 AND id < $2",  # noqa: S608
            low, high, timeout=_TIMEOUT)
        count = int(result.split()[-1])
        copied += count
        if say_each and copied * 10 // total > shown:
            shown = copied * 10 // total
            report_progress(f"    {table}: {copied:,} of {total:,} rows copied (up to {day})")
    low = partitions.day_bounds(table, first)[0]
    high = partitions.day_bounds(table, last)[1]
    result = await connection.execute(
        f"INSERT INTO {partitions.default_name(table)} SELECT * FROM {old}"  # noqa: S608
        f" WHERE NOT (id >= $1 AND id < $2)", low, high, timeout=_TIMEOUT)
    copied += int(result.split()[-1])
    if copied != total:
        raise RuntimeError(f"0005_partitions: copied {copied} rows of {table}, expected "
                           f"{total}; nothing was changed")
    if say_each:
        report_progress(f"    {table}: building the primary key and {len(indexes)} indexes ...")
    await connection.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)",
                             timeout=_TIMEOUT)
    for definition in indexes:
        await connection.execute(definition, timeout=_TIMEOUT)
    for definition in _NEW_INDEXES.get(table, []):
        await connection.execute(definition, timeout=_TIMEOUT)
    await connection.execute(f"DROP TABLE {old}")
    await connection.execute(f"ANALYZE {table}", timeout=_TIMEOUT)


async def forward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    connection = await asyncpg.connect(host=client.host, port=client.port, user=client.user,
                                       password=client.password, database=client.database)
    try:
        async with connection.transaction():
            for table in partitions.PREFIXES:
                await _convert(connection, table)
    finally:
        await connection.close()


class Migration(migrations.Migration):
    dependencies = [('relay', '0003_endpoint_kind')]

    initial = False
    atomic = False

    operations = [
        ops.RunPython(forward),
    ]

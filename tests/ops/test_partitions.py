"""Daily partitions: made ahead, no insert ever fails for want of one, strays moved in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise import connections

from relay import partitions
from relay.ids import _encode


async def _sql(query: str, *values: object) -> list[dict]:
    async with connections.get("default").acquire_connection() as connection:
        return [dict(row) for row in await connection.fetch(query, *values)]


def _id_at(prefix: str, moment: datetime, tail: str = "0" * 15 + "1") -> str:
    return f"{prefix}_{_encode(int(moment.timestamp() * 1000), 10)}{tail}"


async def _insert_event(event_id: str, received_at: datetime) -> str:
    rows = await _sql(
        "INSERT INTO event (id, source_slug, received_at, method, query, headers, content_type,"
        " size, body) VALUES ($1, 's', $2, 'POST', '', '{}', '', 2, '{}'::bytea)"
        " RETURNING tableoid::regclass::text AS part", event_id, received_at)
    return rows[0]["part"]


async def _names(table: str) -> set[str]:
    async with connections.get("default").acquire_connection() as connection:
        return {part.name for part in await partitions.day_partitions(connection, table)}


async def test_migrate_makes_today_and_the_coming_days(db):
    today = partitions.today()
    for table in partitions.PREFIXES:
        names = await _names(table)
        for ahead in range(partitions.DAYS_AHEAD + 1):
            assert partitions.partition_name(table, today + timedelta(days=ahead)) in names


async def test_ensure_partitions_makes_missing_days_once(db):
    first = partitions.today() + timedelta(days=40)
    async with connections.get("default").acquire_connection() as connection:
        try:
            made = await partitions.ensure_partitions(connection, first, first + timedelta(days=1))
            assert sorted(made) == sorted(
                partitions.partition_name(table, first + timedelta(days=n))
                for table in partitions.PREFIXES for n in (0, 1))
            assert await partitions.ensure_partitions(connection, first,
                                                      first + timedelta(days=1)) == []
        finally:
            for name in made:
                await connection.execute(f"DROP TABLE IF EXISTS {name}")


async def test_the_last_and_first_millisecond_of_a_day_land_in_their_days(db):
    midnight = partitions.day_start(partitions.today() + timedelta(days=1))
    before = midnight - timedelta(milliseconds=1)
    last_id = _id_at("evt", before, "z" * 16)
    first_id = _id_at("evt", midnight, "0" * 16)
    assert await _insert_event(last_id, before) == partitions.partition_name(
        "event", before.date())
    assert await _insert_event(first_id, midnight) == partitions.partition_name(
        "event", midnight.date())
    assert {row["id"] for row in await _sql("SELECT id FROM event")} == {last_id, first_id}


async def test_an_id_without_its_day_goes_to_the_default_partition_then_moves(db):
    far = datetime.now(UTC) + timedelta(days=60)
    event_id = _id_at("evt", far)
    assert await _insert_event(event_id, far) == "event_default"
    assert await _insert_event("evt_handmade", far) == "event_default"
    async with connections.get("default").acquire_connection() as connection:
        try:
            made = await partitions.ensure_partitions(connection, far.date(), far.date(),
                                                      tables=("event",))
            assert made == [partitions.partition_name("event", far.date())]
            rows = await _sql("SELECT id, tableoid::regclass::text AS part FROM event ORDER BY id")
            assert rows == [
                {"id": event_id, "part": partitions.partition_name("event", far.date())},
                {"id": "evt_handmade", "part": "event_default"},
            ]
        finally:
            await connection.execute("DELETE FROM event")
            await connection.execute(
                f"DROP TABLE IF EXISTS {partitions.partition_name('event', far.date())}")


def test_day_bounds_follow_the_ids():
    day = datetime(2026, 3, 1, tzinfo=UTC).date()
    low, high = partitions.day_bounds("delivery", day)
    assert low == partitions.id_bound("dlv", datetime(2026, 3, 1, tzinfo=UTC))
    assert high == partitions.id_bound("dlv", datetime(2026, 3, 2, tzinfo=UTC))
    assert low <= _id_at("dlv", datetime(2026, 3, 1, tzinfo=UTC)) < high
    assert partitions.day_of_id(_id_at("dlv", datetime(2026, 3, 1, 23, 59, tzinfo=UTC))) == day
    assert partitions.day_of_id("dlv_handmade") is None

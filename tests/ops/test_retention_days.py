"""Retention drops whole expired days, and keeps every row still in flight."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from tortoise import connections

from kernel import partitions
from kernel.ids import _encode
from relay import retention
from relay.retention import purge_expired
from tests.ops.conftest import relay_env, run

NOW = datetime.now(UTC)
DAY = (NOW - timedelta(days=40)).date()
NEXT = DAY + timedelta(days=1)
_counter = iter(range(1, 10**6))


def _id(prefix: str, day: object, hour: int = 12) -> str:
    moment = partitions.day_start(day) + timedelta(hours=hour)  # type: ignore[arg-type]
    return f"{prefix}_{_encode(int(moment.timestamp() * 1000), 10)}{_encode(next(_counter), 16)}"


async def _sql(query: str, *values: object) -> list[dict]:
    async with connections.get("default").acquire_connection() as connection:
        return [dict(row) for row in await connection.fetch(query, *values)]


async def _event(day: object, routed: bool = True) -> str:
    event_id = _id("evt", day)
    received = partitions.day_start(day) + timedelta(hours=12)  # type: ignore[arg-type]
    await _sql("INSERT INTO event (id, source_slug, received_at, method, query, headers,"
               " content_type, size, body) VALUES ($1, 's', $2, 'POST', '', '{}',"
               " '', 2, '{}'::bytea)", event_id, received)
    if not routed:
        await _sql("INSERT INTO event_unrouted (event_id, source_slug, received_at)"
                   " VALUES ($1, 's', $2)", event_id, received)
    return event_id


async def _delivery(event_id: str, status: str, day: object, attempts: int = 1,
                    attempt_day: object = None) -> str:
    delivery_id = _id("dlv", day)
    await _sql("INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,"
               " created_at, next_attempt_at) VALUES ($1, $2, 'ep_x', $3, $4, now(), now())",
               delivery_id, event_id, status, attempts)
    for number in range(1, attempts + 1):
        await _sql("INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at,"
                   " duration_ms, request_headers, response_headers, response_body)"
                   " VALUES ($1, $2, 'ep_x', $3, now(), 1.0, '{}', '{}', '')",
                   _id("att", attempt_day or day), delivery_id, number)
    return delivery_id


async def _rejected(day: object) -> None:
    received = partitions.day_start(day) + timedelta(hours=12)  # type: ignore[arg-type]
    await _sql("INSERT INTO rejected_request (id, source_id, received_at, reason, headers,"
               " body_preview, size) VALUES ($1, 'src_x', $2, 'bad', '{}', ''::bytea, 0)",
               _id("rej", day), received)


async def _ids(table: str) -> set[str]:
    return {row["id"] for row in await _sql(f"SELECT id FROM {table}")}


@pytest.fixture
async def old_days(db):
    """Partitions for two expired days (and a refused-requests day 9 days back)."""
    rejected_day = (NOW - timedelta(days=9)).date()
    async with connections.get("default").acquire_connection() as connection:
        await partitions.ensure_partitions(connection, DAY, NEXT)
        await partitions.ensure_partitions(connection, rejected_day, rejected_day,
                                           tables=("rejected_request",))
    yield rejected_day
    async with connections.get("default").acquire_connection() as connection:
        for table in partitions.PREFIXES:
            for day in (DAY, NEXT, rejected_day):
                await connection.execute(
                    f"DROP TABLE IF EXISTS {partitions.partition_name(table, day)}")


async def _scenario() -> dict[str, str]:
    made = {
        "done": await _event(DAY),
        "pending": await _event(DAY),
        "late_retry": await _event(DAY),
        "unrouted": await _event(DAY, routed=False),
        "next_done": await _event(NEXT),
    }
    made["d_done"] = await _delivery(made["done"], "succeeded", DAY, attempts=2)
    made["d_done_2"] = await _delivery(made["done"], "failed", NEXT, attempts=1)
    made["d_pending"] = await _delivery(made["pending"], "pending", DAY, attempts=0)
    made["d_pending_sibling"] = await _delivery(made["pending"], "succeeded", DAY)
    # Routed on day one, still retrying, its delivery and attempts on the next day.
    made["d_late_retry"] = await _delivery(made["late_retry"], "retrying", NEXT, attempts=2)
    made["d_next_done"] = await _delivery(made["next_done"], "cancelled", NEXT, attempts=0)
    return made


async def test_expired_days_are_dropped_and_rows_in_flight_kept(old_days):
    made = await _scenario()
    await _rejected(old_days)
    await _rejected(NOW.date())
    lines: list[str] = []
    report = await purge_expired(days=30, say=lines.append)

    kept_events = {made[k] for k in ("pending", "late_retry", "unrouted")}
    assert await _ids("event") == kept_events
    assert await _ids("delivery") == {made[k] for k in (
        "d_pending", "d_pending_sibling", "d_late_retry")}
    attempts = await _sql("SELECT delivery_id, count(*) AS n FROM attempt GROUP BY delivery_id")
    assert {row["delivery_id"]: row["n"] for row in attempts} == {
        made["d_pending_sibling"]: 1, made["d_late_retry"]: 2}
    # What stays went to the default partitions; the day partitions are gone.
    parts = await _sql("SELECT DISTINCT tableoid::regclass::text AS part FROM event"
                       " UNION SELECT DISTINCT tableoid::regclass::text FROM delivery")
    assert {row["part"] for row in parts} == {"event_default", "delivery_default"}
    for table in ("event", "delivery", "attempt"):
        names = {row["name"] for row in await _sql(
            "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = $1::regclass", table)}
        assert partitions.partition_name(table, DAY) not in names
        assert partitions.partition_name(table, NEXT) not in names
    assert len(await _ids("rejected_request")) == 1
    assert (report["events"], report["deliveries"], report["attempts"],
            report["rejected_requests"]) == (2, 3, 3, 1)
    assert report["days_dropped"] == 5  # two days of events, three of refused requests
    assert f"  day {DAY}: dropped 1 events, 1 deliveries, 2 attempts" in lines, lines

    # Once the retry ends the event goes too, by the row path.
    await _sql("UPDATE delivery SET status = 'succeeded' WHERE id = $1", made["d_late_retry"])
    again = await purge_expired(days=30)
    assert await _ids("event") == {made["pending"], made["unrouted"]}
    assert again["events"] == 1


async def test_a_day_keeping_too_much_stays_whole_and_loses_only_final_rows(old_days,
                                                                           monkeypatch):
    made = await _scenario()
    monkeypatch.setattr(retention, "MOVE_LIMIT", 0)
    report = await purge_expired(days=30)
    assert report["days_kept"] == 2
    assert await _ids("event") == {made[k] for k in ("pending", "late_retry", "unrouted")}
    assert made["d_pending"] in await _ids("delivery")
    assert made["d_late_retry"] in await _ids("delivery")
    async with connections.get("default").acquire_connection() as connection:
        names = {part.name for part in await partitions.day_partitions(connection, "event")}
    assert partitions.partition_name("event", DAY) in names


async def test_dry_run_counts_days_once_and_drops_nothing(old_days):
    made = await _scenario()
    report = await purge_expired(days=30, dry_run=True)
    assert report["days_dropped"] == 5
    assert report["events"] == 5  # whole days, before what would be kept is set aside
    assert await _ids("event") == {made[k] for k in (
        "done", "pending", "late_retry", "unrouted", "next_done")}


async def test_purge_command_says_which_days_it_dropped(old_days):
    await _scenario()
    code, out, err = await run([sys.executable, "manage.py", "purge", "--days", "30"],
                               relay_env())
    assert code == 0, err
    assert f"  day {DAY}: dropped 1 events, 1 deliveries, 2 attempts" in out
    assert f"  day {NEXT}: dropped 1 events, 2 deliveries, 1 attempts" in out
    assert out.strip().splitlines()[-1].startswith("Removed 2 events, 3 deliveries, 3 attempts")
    assert "5 day partitions dropped whole" in out.strip().splitlines()[-1]


async def test_a_day_only_partly_past_the_retention_is_not_deleted_row_by_row(db):
    """Its rows go with the day, once all of it is past: never millions of rows one by one."""
    day = (NOW - timedelta(days=30)).date()
    async with connections.get("default").acquire_connection() as connection:
        await partitions.ensure_partitions(connection, day, day)
    try:
        event_id = f"evt_{_encode(int(partitions.day_start(day).timestamp() * 1000) + 1000, 10)}"
        event_id += "0" * 15 + "1"
        await _sql("INSERT INTO event (id, source_slug, received_at, method, query, headers,"
                   " content_type, size, body) VALUES ($1, 's', $2, 'POST', '', '{}',"
                   " '', 2, '{}'::bytea)", event_id,
                   partitions.day_start(day) + timedelta(seconds=1))
        await _delivery(event_id, "succeeded", day)
        report = await purge_expired(days=30)
        assert await _ids("event") == {event_id}
        assert report["events"] == 0
    finally:
        async with connections.get("default").acquire_connection() as connection:
            for table in partitions.PREFIXES:
                await connection.execute(
                    f"DROP TABLE IF EXISTS {partitions.partition_name(table, day)}")

"""Retention: exactly what is old (and final) goes; everything else stays."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from tortoise import connections

from kernel.ids import id_boundary, new_id
from relay.retention import purge_expired, rest_after
from tests.ops.conftest import relay_env, run

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


async def _sql(query: str, values: list | None = None) -> list[dict]:
    _, rows = await connections.get("default").execute_query(query, values or [])
    return [dict(row) for row in rows]


async def _event(received_at: datetime, routed: bool = True) -> str:
    event_id = new_id("evt")
    await _sql("INSERT INTO event (id, source_slug, received_at, method, query, headers,"
               " content_type, size, body) VALUES ($1, 's', $2, 'POST', '', '{}',"
               " '', 2, '{}'::bytea)", [event_id, received_at])
    if not routed:
        await _sql("INSERT INTO event_unrouted (event_id, source_slug, received_at)"
                   " VALUES ($1, 's', $2)", [event_id, received_at])
    return event_id


async def _delivery(event_id: str, status: str, attempts: int = 1) -> str:
    delivery_id = new_id("dlv")
    await _sql("INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,"
               " created_at, next_attempt_at) VALUES ($1, $2, 'ep_x', $3, $4, now(), now())",
               [delivery_id, event_id, status, attempts])
    for number in range(1, attempts + 1):
        await _sql("INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at,"
                   " duration_ms, request_headers, response_headers, response_body)"
                   " VALUES ($1, $2, 'ep_x', $3, now(), 1.0, '{}', '{}', '')",
                   [new_id("att"), delivery_id, number])
    return delivery_id


async def _rejected(received_at: datetime) -> None:
    # Ids carry their creation time; an old row has an old id.
    rejected_id = id_boundary("rej", received_at) + "0" * 16
    await _sql("INSERT INTO rejected_request (id, source_id, received_at, reason, headers,"
               " body_preview, size) VALUES ($1, 'src_x', $2, 'bad', '{}', ''::bytea, 0)",
               [rejected_id, received_at])


async def _ids(table: str) -> set[str]:
    return {row["id"] for row in await _sql(f"SELECT id FROM {table}")}


async def _scenario() -> dict[str, str]:
    made = {
        "old_done": await _event(OLD),
        "old_failed": await _event(OLD),
        "old_pending": await _event(OLD),
        "old_retrying": await _event(OLD),
        "old_delivering": await _event(OLD),
        "old_no_endpoint": await _event(OLD),
        "old_unrouted": await _event(OLD, routed=False),
        "recent_done": await _event(RECENT),
    }
    made["d_old_done_1"] = await _delivery(made["old_done"], "succeeded", attempts=3)
    made["d_old_done_2"] = await _delivery(made["old_done"], "cancelled", attempts=0)
    made["d_old_failed"] = await _delivery(made["old_failed"], "failed", attempts=2)
    made["d_old_pending_done"] = await _delivery(made["old_pending"], "succeeded")
    made["d_old_pending"] = await _delivery(made["old_pending"], "pending", attempts=0)
    made["d_old_retrying"] = await _delivery(made["old_retrying"], "retrying", attempts=2)
    made["d_old_delivering"] = await _delivery(made["old_delivering"], "delivering")
    made["d_recent_done"] = await _delivery(made["recent_done"], "succeeded")
    await _rejected(NOW - timedelta(days=8))
    await _rejected(NOW - timedelta(days=9))
    await _rejected(NOW - timedelta(days=6))
    return made


async def test_purge_removes_exactly_what_expired(db):
    made = await _scenario()
    lines: list[str] = []
    report = await purge_expired(days=30, batch_size=2, say=lines.append)

    assert await _ids("event") == {made[k] for k in (
        "old_pending", "old_retrying", "old_delivering", "old_unrouted", "recent_done")}
    assert await _ids("delivery") == {made[k] for k in (
        "d_old_pending_done", "d_old_pending", "d_old_retrying", "d_old_delivering",
        "d_recent_done")}
    remaining_attempts = await _sql("SELECT delivery_id, count(*) AS n FROM attempt"
                                    " GROUP BY delivery_id")
    assert {row["delivery_id"]: row["n"] for row in remaining_attempts} == {
        made["d_old_pending_done"]: 1, made["d_old_retrying"]: 2,
        made["d_old_delivering"]: 1, made["d_recent_done"]: 1}
    assert len(await _ids("rejected_request")) == 1
    assert {key: report[key] for key in ("events", "deliveries", "attempts",
                                         "rejected_requests")} == {
        "events": 3, "deliveries": 3, "attempts": 5, "rejected_requests": 2}
    assert any("events: 3 done" in line for line in lines)

    again = await purge_expired(days=30)
    assert (again["events"], again["deliveries"], again["rejected_requests"]) == (0, 0, 0)


async def test_dry_run_counts_and_deletes_nothing(db):
    await _scenario()
    before = {table: await _ids(table) for table in ("event", "delivery", "attempt",
                                                     "rejected_request")}
    report = await purge_expired(days=30, dry_run=True, batch_size=3)
    assert {key: report[key] for key in ("events", "deliveries", "attempts",
                                         "rejected_requests")} == {
        "events": 3, "deliveries": 3, "attempts": 5, "rejected_requests": 2}
    for table, ids in before.items():
        assert await _ids(table) == ids


async def test_purge_command_prints_its_report(db):
    await _scenario()
    code, out, err = await run([sys.executable, "manage.py", "purge", "--days", "30",
                                "--batch-size", "1"], relay_env())
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith(
        "Removed 3 events, 3 deliveries, 5 attempts and 2 refused requests in ")
    code, _, err = await run([sys.executable, "manage.py", "purge", "--days", "0"], relay_env())
    assert code != 0
    assert "at least 1 day" in err
    code, _, err = await run([sys.executable, "manage.py", "purge", "--share", "0"], relay_env())
    assert code != 0
    assert "share must be more than 0" in err


@pytest.mark.parametrize(("worked", "share", "rest"), [
    (0.2, 1.0, 0.0),
    (0.2, 0.5, 0.2),
    (0.2, 0.2, 0.8),
    (1.0, 0.1, 9.0),
])
def test_rest_keeps_work_to_its_share_of_the_time(worked, share, rest):
    assert rest_after(worked, share) == pytest.approx(rest)
    if worked + rest:
        assert worked / (worked + rest) == pytest.approx(share)


async def test_daily_purge_runs_in_the_background(db):
    from relay.retention import start_daily_purge
    from tests.servers import wait_until

    made = await _scenario()
    task = start_daily_purge(interval_seconds=3600, first_run_after=0, share=1)
    try:
        await wait_until(lambda: _gone(made["old_done"]), timeout=10,
                         message="the background purge")
    finally:
        task.cancel()


async def _gone(event_id: str) -> bool:
    return not await _sql("SELECT 1 FROM event WHERE id = $1", [event_id])


async def test_daily_purge_prunes_the_rollups_too(db):
    """The dispatcher hands the daily purge its rollup pruning step."""
    from datetime import UTC, datetime, timedelta

    from dispatch.rollups import prune_expired
    from relay.retention import start_daily_purge
    from tests.servers import wait_until

    old = datetime.now(UTC) - timedelta(days=40)
    await _sql("INSERT INTO endpoint_rollup VALUES ('ep_x', 60, $1, 1, 1, 0, 1.0, '{}'),"
               " ('ep_x', 60, now(), 1, 1, 0, 1.0, '{}')", [old])
    await _sql("INSERT INTO source_rollup VALUES ('shop', 3600, $1, 5)", [old])
    task = start_daily_purge(interval_seconds=3600, first_run_after=0, share=1,
                             also=[prune_expired])

    async def pruned() -> bool:
        rows = await _sql("SELECT (SELECT count(*) FROM endpoint_rollup) AS e,"
                          " (SELECT count(*) FROM source_rollup) AS s")
        return (rows[0]["e"], rows[0]["s"]) == (1, 0)

    try:
        await wait_until(pruned, timeout=10, message="the rollups pruned")
    finally:
        task.cancel()

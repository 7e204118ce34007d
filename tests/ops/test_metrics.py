"""/metrics: token rules, values that move with traffic, sums across processes, gauges
read from the database at scrape time."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from tortoise import connections

from relay.ids import new_id
from tests.ops.conftest import relay_env, run
from tests.ops.metrics_text import samples, value


async def _scrape(client, headers) -> dict:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_metrics_need_a_live_token(client, admin, viewer):
    assert (await client.get("/metrics")).status_code == 401
    bad = await client.get("/metrics", headers={"Authorization": "Bearer rly_nope"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/metrics", headers=viewer)).status_code == 200
    assert (await client.get("/metrics", headers=admin)).status_code == 200
    from relay.tokens import revoke_tokens

    await revoke_tokens("test viewer")
    assert (await client.get("/metrics", headers=viewer)).status_code == 401


async def test_metrics_can_be_public(client):
    from django.test import override_settings

    with override_settings(RELAY_METRICS_PUBLIC=True):
        assert (await client.get("/metrics")).status_code == 200


async def test_ingest_counters_and_latency_move_with_traffic(client, admin):
    created = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "metered", "max_body_bytes": 100,
        "verification": {"kind": "token", "secret": "s3cret-token"},
        "dedup": {"header": "x-id"}})
    assert created.status_code == 201, created.text
    before = await _scrape(client, admin)

    token = {"x-relay-token": "s3cret-token"}
    assert (await client.post("/in/metered", content=b"{}", headers={**token, "x-id": "1"})
            ).status_code == 202
    assert (await client.post("/in/metered", content=b"{}", headers={**token, "x-id": "2"})
            ).status_code == 202
    assert (await client.post("/in/metered", content=b"{}", headers={**token, "x-id": "1"})
            ).status_code == 200
    assert (await client.post("/in/metered", content=b"{}", headers={"x-relay-token": "wrong"})
            ).status_code == 401
    assert (await client.post("/in/metered", content=b"x" * 101, headers=token)).status_code == 413
    assert (await client.post("/in/no-such-source-1", content=b"{}")).status_code == 404
    assert (await client.post("/in/no-such-source-2", content=b"{}")).status_code == 404
    assert (await client.get("/in/metered")).status_code == 405

    after = await _scrape(client, admin)

    def moved(source: str, result: str) -> float:
        name = "relay_ingest_requests_total"
        return (value(after, name, source=source, result=result)
                - value(before, name, source=source, result=result))

    assert moved("metered", "accepted") == 2
    assert moved("metered", "duplicate") == 1
    assert moved("metered", "rejected") == 1
    assert moved("metered", "too_large") == 1
    assert moved("metered", "method_not_allowed") == 1
    # Unknown slugs never become label values: anyone can post to /in/<anything>.
    assert moved("_unknown", "not_found") == 2
    assert not any("no-such-source" in str(key) for key in after)
    count = "relay_ingest_duration_seconds_count"
    assert value(after, count) - value(before, count) == 8
    assert value(after, "relay_ingest_duration_seconds_sum") > value(
        before, "relay_ingest_duration_seconds_sum")
    assert value(after, "relay_info", version="0.1.0") == 1


async def test_dispatcher_counters_from_another_process_are_added_up(client, admin):
    from relay.metrics import record_attempt, record_delivery_final

    before = await _scrape(client, admin)
    record_attempt("ep_here", "success", 0.02)
    record_delivery_final("ep_here", "succeeded")
    script = ("import django; django.setup(); from relay import metrics; "
              "[metrics.record_attempt('ep_there', 'timeout', 15.0) for _ in range(3)]; "
              "metrics.record_delivery_final('ep_there', 'failed')")
    code, _, err = await run([sys.executable, "-c", script], relay_env())
    assert code == 0, err
    after = await _scrape(client, admin)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("relay_delivery_attempts_total", endpoint="ep_here", outcome="success") == 1
    # The other process has exited: its counts stay in the totals.
    assert moved("relay_delivery_attempts_total", endpoint="ep_there", outcome="timeout") == 3
    assert moved("relay_deliveries_completed_total", endpoint="ep_there", status="failed") == 1
    assert moved("relay_deliveries_completed_total", endpoint="ep_here", status="succeeded") == 1
    assert moved("relay_delivery_attempt_duration_seconds_count") == 4
    assert moved("relay_delivery_attempt_duration_seconds_bucket", le="15.0") == 4
    assert moved("relay_delivery_attempt_duration_seconds_bucket", le="10.0") == 1  # 0.02 s


async def _endpoint(opened_at: datetime | None, enabled: bool = True) -> str:
    endpoint_id = new_id("ep")
    await connections.get("default").execute_query(
        "INSERT INTO endpoint (id, url, description, enabled, secret_encrypted, event_types,"
        " sources, max_in_flight, circuit_opened_at, consecutive_failures,"
        " created_at, updated_at)"
        " VALUES ($1, 'http://127.0.0.1:9/', '', $2, 'x', '[]', '[]', 10, $3, 0,"
        " now(), now())", [endpoint_id, enabled, opened_at])
    return endpoint_id


async def _delivery(endpoint_id: str, status: str, due: datetime | None) -> None:
    await connections.get("default").execute_query(
        "INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,"
        " next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 0, $5, now())",
        [new_id("dlv"), new_id("evt"), endpoint_id, status, due])


async def test_queue_and_circuit_gauges_are_read_from_the_database(client, admin):
    now = datetime.now(UTC)
    closed = await _endpoint(None)
    await _endpoint(None)
    await _endpoint(now - timedelta(seconds=1))  # open: inside the cool-down
    await _endpoint(now - timedelta(hours=1))  # half_open: cool-down over
    await _endpoint(None, enabled=False)
    await _delivery(closed, "pending", now - timedelta(seconds=120))
    await _delivery(closed, "retrying", now + timedelta(hours=1))
    await _delivery(closed, "delivering", None)
    await _delivery(closed, "delivering", None)
    await _delivery(closed, "succeeded", None)

    parsed = await _scrape(client, admin)
    assert value(parsed, "relay_database_up") == 1
    assert value(parsed, "relay_deliveries_pending") == 2
    assert value(parsed, "relay_deliveries_in_flight") == 2
    assert 119 <= value(parsed, "relay_oldest_due_delivery_age_seconds") < 180
    assert value(parsed, "relay_endpoints", state="closed") == 2
    assert value(parsed, "relay_endpoints", state="open") == 1
    assert value(parsed, "relay_endpoints", state="half_open") == 1
    assert value(parsed, "relay_endpoints", state="disabled") == 1


async def test_nothing_due_means_zero_lag(client, admin):
    parsed = await _scrape(client, admin)
    assert value(parsed, "relay_oldest_due_delivery_age_seconds") == 0
    assert value(parsed, "relay_deliveries_pending") == 0


async def test_a_process_file_not_sized_yet_does_not_break_the_scrape(client, admin):
    """A process creates its metrics file empty and sizes it a moment later (or was
    killed in between): a scrape meanwhile still answers, with everyone else's counts."""
    from relay.metrics import METRICS_DIR

    empty = METRICS_DIR / "counter_999999999.db"
    empty.touch()
    try:
        scraped = await _scrape(client, admin)
    finally:
        empty.unlink()
    assert any(name.startswith("relay_") for name, _ in scraped)

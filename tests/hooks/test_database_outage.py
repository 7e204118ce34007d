"""PostgreSQL stops while Relay runs: ingest answers 503 with Retry-After (never a 2xx),
/readyz 503; PostgreSQL starts again: Relay recovers without a restart, and every event that
got a 2xx is in the database."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from hooks.models import Event
from tests.servers import wait_until


async def _answer(client: httpx.AsyncClient, n: int) -> tuple[int, str | None, dict]:
    try:
        response = await client.post("/in/outage", content=b'{"n": %d}' % n)
    except httpx.TransportError as exc:
        return 0, type(exc).__name__, {}
    body = response.json() if response.headers.get("content-type") == "application/json" else {}
    return response.status_code, body.get("id"), dict(response.headers)


async def test_ingest_during_a_database_outage(client, make_source, pg_cluster, caplog):
    if pg_cluster is None:
        pytest.skip("the database is external (RELAY_TEST_DATABASE_URL): cannot stop it")
    await make_source("outage")
    answers: list[tuple[int, str | None, dict]] = []
    stop_traffic = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not stop_traffic.is_set():
            answers.append(await _answer(client, n))
            n += 1
            await asyncio.sleep(0)

    sender = asyncio.create_task(traffic())
    try:
        await wait_until(lambda: sum(1 for a in answers if a[0] == 202) >= 5,
                         message="ingest to accept webhooks before the outage")
        await asyncio.to_thread(pg_cluster.stop)

        status, _, headers = await _answer(client, -1)
        assert status == 503
        assert headers["retry-after"].isdigit()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"].isdigit()
        during = len(answers)
        await wait_until(lambda: len(answers) >= during + 20,
                         message="ingest to keep answering while PostgreSQL is down")
        down_answers = answers[during:during + 20]
        assert {a[0] for a in down_answers} == {503}, down_answers
        # One summary line for the burst, not a line (or a Django ERROR) per request.
        outage_lines = [r for r in caplog.records if r.name == "relay.outage"]
        assert 1 <= len(outage_lines) <= 2, [r.getMessage() for r in outage_lines]
        assert "answered 503" in outage_lines[0].getMessage()
        assert not [r for r in caplog.records if r.name == "django.request"]
    finally:
        await asyncio.to_thread(pg_cluster.start)

    try:
        recovered_from = len(answers)

        async def recovered() -> bool:
            return any(a[0] == 202 for a in answers[recovered_from:])

        await wait_until(recovered, timeout=30, message="ingest to accept webhooks again")
        assert (await client.get("/readyz")).status_code == 200
        last = len(answers)
        await wait_until(lambda: len(answers) >= last + 5, message="more webhooks")
    finally:
        stop_traffic.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sender, 10)

    statuses = {a[0] for a in answers}
    assert statuses <= {202, 503}, statuses
    assert {a[0] for a in answers[-5:]} == {202}
    accepted = [a[1] for a in answers if a[0] == 202]
    stored = set(await Event.filter(id__in=accepted).values_list("id", flat=True))
    assert stored == set(accepted)
    assert len(accepted) == len(set(accepted))

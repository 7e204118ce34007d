"""`/healthz` and `/readyz` while the database is up (the outage is in
tests/hooks/test_database_outage.py)."""

from __future__ import annotations


async def test_healthz(client):
    answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_readyz_with_the_database_up(client):
    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok"}


async def test_health_needs_no_token(client):
    for path in ("/healthz", "/readyz"):
        assert (await client.get(path, headers={"Authorization": "Bearer bad"})).status_code == 200

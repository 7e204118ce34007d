"""Endpoint headers are secrets: encrypted in the database, in full for admin tokens only,
masked in viewer answers and in attempt records; the migration encrypts existing rows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import connections

from dispatch.endpoint_headers import MASK
from relay.crypto import decrypt_secret
from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Bearer s3cret-of-the-subscriber"
HEADERS = {"Authorization": SECRET, "X-Team": "blue"}


async def test_headers_are_stored_encrypted(client, admin):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/h", headers=HEADERS)
    _, [row] = await connections.get("default").execute_query(
        "SELECT to_jsonb(endpoint)::text AS whole, headers_encrypted FROM endpoint"
        " WHERE id = $1", [endpoint["id"]])
    assert "s3cret" not in row["whole"] and "blue" not in row["whole"]
    assert json.loads(decrypt_secret(row["headers_encrypted"])) == HEADERS


async def test_admins_see_values_viewers_see_names(client, admin, viewer):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/h", headers=HEADERS)
    assert endpoint["headers"] == HEADERS
    path = f"/api/v1/endpoints/{endpoint['id']}"
    assert (await client.get(path, headers=admin)).json()["headers"] == HEADERS
    masked = {"Authorization": MASK, "X-Team": MASK}
    assert (await client.get(path, headers=viewer)).json()["headers"] == masked
    [listed] = (await client.get("/api/v1/endpoints", headers=viewer)).json()["data"]
    assert listed["headers"] == masked
    assert "s3cret" not in (await client.get("/api/v1/endpoints", headers=viewer)).text

    patched = await client.patch(path, headers=admin, json={"headers": {"X-Key": "k2"}})
    assert patched.json()["headers"] == {"X-Key": "k2"}
    assert (await client.get(path, headers=viewer)).json()["headers"] == {"X-Key": MASK}


async def test_attempts_record_the_endpoint_headers_masked(client, admin, viewer, sink,
                                                           dispatcher):
    from dispatch.models import Attempt

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/s"), headers=HEADERS)
    event_id = await post_event(client, "shop", headers={"x-team": "red"})
    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    [got] = sink.received("/s")
    assert got.headers["authorization"] == SECRET
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.request_headers["authorization"] == MASK
    assert attempt.request_headers["x-team"] == MASK
    assert attempt.request_headers["webhook-id"] == event_id

    # A record written before headers were masked is still hidden from viewers.
    await Attempt.filter(id=attempt.id).update(
        request_headers={**attempt.request_headers, "authorization": SECRET})
    for token, shown in ((viewer, MASK), (admin, SECRET)):
        answer = await client.get(f"/api/v1/deliveries/{delivery.id}", headers=token)
        assert answer.json()["attempts"][0]["request_headers"]["authorization"] == shown
    assert endpoint["id"] == delivery.endpoint_id


async def _python(code: str, url: str) -> None:
    env = {**os.environ, "RELAY_DATABASE_URL": url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]


_MIGRATE = """
import asyncio, django
django.setup()
from tortoise.migrations.api.migrate import migrate
from relay.database import tortoise_config
asyncio.run(migrate(config=tortoise_config(), target={target!r}))
"""


async def test_the_migration_encrypts_existing_headers(database):
    base = os.environ["RELAY_DATABASE_URL"]
    name = f"relay_migrate_{os.getpid()}"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    admin_connection = await asyncpg.connect(base)
    await admin_connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin_connection.execute(f'CREATE DATABASE "{name}"')
    try:
        await _python(_MIGRATE.format(target="relay.0003_endpoint_kind"), url)
        old = await asyncpg.connect(url)
        try:
            await old.execute(
                "INSERT INTO endpoint (id, url, description, enabled, secret_encrypted,"
                " event_types, sources, headers, max_in_flight, consecutive_failures,"
                " created_at, updated_at) VALUES"
                " ('ep_a', 'http://127.0.0.1:9/', '', true, 'x', '[]', '[]', $1, 10, 0, now(),"
                " now()), ('ep_b', 'http://127.0.0.1:9/', '', true, 'x', '[]', '[]', '{}', 10,"
                " 0, now(), now())", json.dumps(HEADERS))
            await _python(_MIGRATE.format(target=None), url)
            rows = {row["id"]: row for row in await old.fetch(
                "SELECT id, headers_encrypted FROM endpoint")}
            columns = {row["column_name"] for row in await old.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'endpoint'")}
        finally:
            await old.close()
    finally:
        await admin_connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_connection.close()
    assert "headers" not in columns
    assert json.loads(decrypt_secret(rows["ep_a"]["headers_encrypted"])) == HEADERS
    assert rows["ep_b"]["headers_encrypted"] is None

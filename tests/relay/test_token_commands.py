"""`manage.py createtoken` / `revoketoken` / `migrate`, run as the operator runs them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from kernel.models import ApiToken
from kernel.tokens import create_token

ROOT = Path(__file__).resolve().parents[2]


async def manage(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "RELAY_DATABASE_URL": os.environ["RELAY_DATABASE_URL"]}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "manage.py"), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_createtoken_prints_the_token_alone_on_its_last_line(client, db):
    code, out, err = await manage("createtoken", "--name", "ci robot", "--scope", "viewer")
    assert code == 0, err
    token = out.rstrip("\n").splitlines()[-1]
    assert token.startswith("rly_") and token == token.strip() and " " not in token
    row = await ApiToken.get(name="ci robot")
    assert row.scope == "viewer"
    assert token not in row.token_hash
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/sources", headers=headers)).status_code == 200
    assert (await client.post("/api/v1/sources", headers=headers,
                              json={"slug": "x"})).status_code == 403

    code, out, err = await manage("revoketoken", "ci robot")
    assert code == 0, err
    assert "Revoked 1" in out
    assert (await client.get("/api/v1/sources", headers=headers)).status_code == 401

    code, _, err = await manage("revoketoken", "ci robot")
    assert code != 0
    assert "no live token" in err


async def test_revoketoken_by_id_leaves_other_tokens(client, db):
    row, first = await create_token("first", "admin")
    _, second = await create_token("first", "admin")
    code, _, err = await manage("revoketoken", row.id)
    assert code == 0, err
    assert (await client.get("/api/v1/sources",
                             headers={"Authorization": f"Bearer {first}"})).status_code == 401
    assert (await client.get("/api/v1/sources",
                             headers={"Authorization": f"Bearer {second}"})).status_code == 200


async def test_createtoken_refuses_an_unknown_scope(db):
    code, out, err = await manage("createtoken", "--name", "x", "--scope", "root")
    assert code != 0
    assert "scope" in err
    assert await ApiToken.all().count() == 0


async def test_migrate_is_idempotent(database):
    code, out, err = await manage("migrate")
    assert code == 0, err
    assert "No migrations to apply" in out

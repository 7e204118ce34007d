"""Source secrets: encrypted at rest, never in any answer."""

from __future__ import annotations

import pytest
from tortoise import connections

from kernel.crypto import decrypt_secret

SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw=="


async def _raw_secret_column(source_id: str) -> str:
    _, rows = await connections.get("default").execute_query(
        "SELECT secret_encrypted, verification::text AS verification FROM source WHERE id = $1",
        [source_id])
    return rows[0]


@pytest.mark.parametrize("kind", ["github", "stripe", "standard_webhooks", "shopify", "token"])
async def test_secret_is_encrypted_at_rest(make_source, kind):
    source = await make_source("s", kind=kind, secret=SECRET)
    row = await _raw_secret_column(source["id"])
    stored = row["secret_encrypted"]
    assert stored and stored != SECRET
    assert SECRET not in stored
    assert "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw" not in stored
    assert SECRET not in row["verification"]
    assert decrypt_secret(stored) == SECRET


async def test_secret_is_never_answered(client, admin, viewer, make_source):
    created = await make_source("s", kind="github", secret=SECRET)
    patched = await client.patch(f"/api/v1/sources/{created['id']}", headers=admin,
                                 json={"verification": {"kind": "github", "secret": SECRET + "2"}})
    answers = [
        created,
        patched.json(),
        (await client.get(f"/api/v1/sources/{created['id']}", headers=admin)).json(),
        (await client.get(f"/api/v1/sources/{created['id']}", headers=viewer)).json(),
        (await client.get("/api/v1/sources", headers=admin)).json()["data"][0],
    ]
    for answer in answers:
        assert "secret" not in answer["verification"]
        assert SECRET not in str(answer)
    schema = (await client.get("/api/v1/openapi.json")).json()["components"]["schemas"]
    assert "secret" not in schema["VerificationOut"]["properties"]


async def test_new_secret_takes_effect_at_once(client, admin, make_source):
    from tests.hooks import signing

    source = await make_source("rot", kind="shopify", secret="one")
    body = b"{}"
    assert (await client.post("/in/rot", content=body,
                              headers=signing.shopify("one", body))).status_code == 202
    await client.patch(f"/api/v1/sources/{source['id']}", headers=admin,
                       json={"verification": {"kind": "shopify", "secret": "two"}})
    assert (await client.post("/in/rot", content=body,
                              headers=signing.shopify("one", body))).status_code == 401
    assert (await client.post("/in/rot", content=body,
                              headers=signing.shopify("two", body))).status_code == 202

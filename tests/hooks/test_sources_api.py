"""`/api/v1/sources`: create, read, update, delete; defaults read back; conflicts; 404s."""

from __future__ import annotations

import pytest

from tests.hooks import signing

UNKNOWN = "src_00000000000000000000000000"


async def test_create_answers_201_with_the_object(client, admin, relay_server):
    answer = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "stripe-live", "name": "Stripe (live)",
        "verification": {"kind": "stripe", "secret": signing.STRIPE_SECRET}})
    assert answer.status_code == 201, answer.text
    source = answer.json()
    assert set(source) == {"id", "slug", "name", "enabled", "max_body_bytes", "verification",
                           "dedup", "event_type", "ingest_url", "created_at", "updated_at"}
    assert source["id"].startswith("src_")
    assert source["ingest_url"] == f"{relay_server}/in/stripe-live"
    assert source["enabled"] is True
    assert source["max_body_bytes"] == 1024 * 1024
    assert source["verification"]["kind"] == "stripe"
    assert source["verification"]["tolerance_seconds"] == 300
    assert source["dedup"] is None and source["event_type"] is None
    assert source["created_at"].endswith("+00:00")
    fetched = await client.get(f"/api/v1/sources/{source['id']}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json() == source


async def test_hmac_defaults_read_back(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "h", "verification": {"kind": "hmac", "secret": "k", "header": "X-Sig"}})
    verification = answer.json()["verification"]
    assert verification == {"kind": "hmac", "header": "x-sig", "query_param": None,
                            "algorithm": "sha256", "encoding": "hex", "prefix": None,
                            "tolerance_seconds": 300}


async def test_token_defaults_to_the_x_relay_token_header(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "t", "verification": {"kind": "token", "secret": "k"}})
    assert answer.json()["verification"]["header"] == "x-relay-token"


async def test_patch_answers_200_with_the_object(client, admin, make_source):
    source = await make_source("p", kind="github", secret="gh")
    answer = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json={
        "name": "Renamed", "max_body_bytes": 2048, "dedup": {"json_path": "a.b"},
        "event_type": {"header": "X-Kind"}})
    assert answer.status_code == 200, answer.text
    patched = answer.json()
    assert patched["name"] == "Renamed"
    assert patched["max_body_bytes"] == 2048
    assert patched["dedup"] == {"json_path": "a.b"}
    assert patched["event_type"] == {"header": "x-kind"}
    assert patched["slug"] == "p"
    assert patched["verification"]["kind"] == "github"
    assert patched["updated_at"] >= source["updated_at"]
    cleared = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin,
                                 json={"dedup": None, "max_body_bytes": None})
    assert cleared.json()["dedup"] is None
    assert cleared.json()["max_body_bytes"] == 1024 * 1024


async def test_patch_of_settings_keeps_the_secret(client, admin, make_source):
    source = await make_source("keep", kind="stripe", secret=signing.STRIPE_SECRET)
    answer = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json={
        "verification": {"kind": "stripe", "tolerance_seconds": 60}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["verification"]["tolerance_seconds"] == 60
    body = b'{"id": "evt_1"}'
    posted = await client.post("/in/keep", content=body,
                               headers=signing.stripe(signing.STRIPE_SECRET, body))
    assert posted.status_code == 202


async def test_patch_to_a_kind_needing_a_secret_without_one_is_422(client, admin, make_source):
    source = await make_source("open")
    answer = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin,
                                json={"verification": {"kind": "shopify"}})
    assert answer.status_code == 422
    assert "verification.secret" in answer.json()["detail"]


async def test_delete_answers_204_then_404(client, admin, make_source):
    source = await make_source("d")
    answer = await client.delete(f"/api/v1/sources/{source['id']}", headers=admin)
    assert answer.status_code == 204
    assert answer.content == b""
    assert (await client.get(f"/api/v1/sources/{source['id']}", headers=admin)).status_code == 404
    assert (await client.delete(f"/api/v1/sources/{source['id']}",
                                headers=admin)).status_code == 404


async def test_duplicate_slug_is_409(client, admin, make_source):
    await make_source("taken")
    other = await make_source("other")
    again = await client.post("/api/v1/sources", headers=admin, json={"slug": "taken"})
    assert again.status_code == 409
    assert "taken" in again.json()["detail"]
    renamed = await client.patch(f"/api/v1/sources/{other['id']}", headers=admin,
                                 json={"slug": "taken"})
    assert renamed.status_code == 409
    assert (await client.get(f"/api/v1/sources/{other['id']}",
                             headers=admin)).json()["slug"] == "other"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/api/v1/sources/{UNKNOWN}"),
    ("PATCH", f"/api/v1/sources/{UNKNOWN}"),
    ("DELETE", f"/api/v1/sources/{UNKNOWN}"),
    ("GET", f"/api/v1/sources/{UNKNOWN}/rejected"),
    ("GET", "/api/v1/sources/not-an-id"),
    ("GET", "/api/v1/events/evt_00000000000000000000000000"),
    ("GET", "/api/v1/events/whatever"),
])
async def test_unknown_ids_are_404(client, admin, method, path):
    answer = await client.request(method, path, headers=admin,
                                  json={"name": "x"} if method == "PATCH" else None)
    assert answer.status_code == 404
    assert answer.json()["detail"]


INVALID = [
    ({"slug": "Not A Slug"}, "slug"),
    ({"slug": ""}, "slug"),
    ({"slug": "-leading-dash"}, "slug"),
    ({}, "slug"),
    ({"slug": "ok", "name": "x" * 201}, "name"),
    ({"slug": "ok", "enabled": "perhaps"}, "enabled"),
    ({"slug": "ok", "max_body_bytes": 0}, "max_body_bytes"),
    ({"slug": "ok", "max_body_bytes": 200 * 1024 * 1024}, "max_body_bytes"),
    ({"slug": "ok", "verification": {"kind": "rsa"}}, "verification.kind"),
    ({"slug": "ok", "verification": {"kind": "github"}}, "verification.secret"),
    ({"slug": "ok", "verification": {"kind": "hmac", "secret": "k"}}, "verification.header"),
    ({"slug": "ok", "verification": {"kind": "hmac", "secret": "k", "header": "X-Sig",
                                     "algorithm": "md5"}}, "verification.algorithm"),
    ({"slug": "ok", "verification": {"kind": "hmac", "secret": "k", "header": "X-Sig",
                                     "encoding": "base32"}}, "verification.encoding"),
    ({"slug": "ok", "verification": {"kind": "hmac", "secret": "k", "header": "bad header"}},
     "verification.header"),
    ({"slug": "ok", "verification": {"kind": "stripe", "secret": "k",
                                     "tolerance_seconds": 0}}, "verification.tolerance_seconds"),
    ({"slug": "ok", "verification": {"kind": "standard_webhooks", "secret": "whsec_%%%"}},
     "verification.secret"),
    ({"slug": "ok", "dedup": {}}, "dedup"),
    ({"slug": "ok", "dedup": {"header": "a", "json_path": "b"}}, "dedup"),
    ({"slug": "ok", "event_type": {"json_path": ""}}, "event_type.json_path"),
    ({"slug": "ok", "verification": "github"}, "verification"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID, ids=[field for _, field in INVALID])
async def test_invalid_fields_are_422_naming_the_field(client, admin, payload, field):
    answer = await client.post("/api/v1/sources", headers=admin, json=payload)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"slug": None}, "slug"),
    ({"enabled": None}, "enabled"),
    ({"slug": "Bad Slug"}, "slug"),
    ({"max_body_bytes": -1}, "max_body_bytes"),
    ({"verification": {"kind": "nope"}}, "verification.kind"),
])
async def test_invalid_patch_is_422_naming_the_field(client, admin, make_source, payload, field):
    source = await make_source("valid")
    answer = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json=payload)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]

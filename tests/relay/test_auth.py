"""Bearer tokens on every route of the admin API (enumerated from the OpenAPI schema, so
routes added later are covered too): none, bad and revoked tokens are 401, a viewer token
may read but not write."""

from __future__ import annotations

import re

import pytest

from kernel.tokens import create_token, revoke_tokens

WRITE_METHODS = ("post", "put", "patch", "delete")


async def _routes(client) -> list[tuple[str, str]]:
    schema = (await client.get("/api/v1/openapi.json")).json()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "zzz_" + "0" * 26, path)
        routes.extend((method.upper(), concrete) for method in operations
                      if method in ("get", *WRITE_METHODS))
    assert len(routes) >= 8, routes
    return routes


async def _statuses(client, headers: dict) -> dict[tuple[str, str], int]:
    return {(method, path): (await client.request(method, path, headers=headers, json={})
                             ).status_code
            for method, path in await _routes(client)}


@pytest.mark.parametrize("authorization", [
    None, "Bearer rly_not-a-real-token", "Bearer", "Basic YWRtaW46YWRtaW4=", "rly_no_scheme",
])
async def test_missing_or_bad_token_is_401_everywhere(client, admin_token, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    statuses = await _statuses(client, headers)
    assert set(statuses.values()) == {401}, statuses


async def test_401_answer_is_json_with_detail(client, db):
    answer = await client.get("/api/v1/sources")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/json")
    assert "token" in answer.json()["detail"]


async def test_revoked_token_is_401_everywhere(client, db):
    row, token = await create_token("soon revoked", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/sources", headers=headers)).status_code == 200
    assert await revoke_tokens(row.id) == 1
    statuses = await _statuses(client, headers)
    assert set(statuses.values()) == {401}, statuses


async def test_viewer_cannot_write_anywhere(client, viewer):
    statuses = {route: status for route, status in (await _statuses(client, viewer)).items()
                if route[0] != "GET"}
    assert statuses and set(statuses.values()) == {403}, statuses


async def test_viewer_can_read_everywhere_but_secrets(client, viewer):
    for (method, path), status in (await _statuses(client, viewer)).items():
        if method == "GET" and not path.endswith("/secret"):
            assert status not in (401, 403), (path, status)


async def test_viewer_reads_real_objects(client, admin, viewer):
    created = await client.post("/api/v1/sources", headers=admin, json={"slug": "seen"})
    source_id = created.json()["id"]
    event = await client.post("/api/v1/events", headers=admin,
                              json={"event_type": "t", "payload": {"a": 1}})
    for path in ("/api/v1/sources", f"/api/v1/sources/{source_id}",
                 f"/api/v1/sources/{source_id}/rejected", "/api/v1/events",
                 f"/api/v1/events/{event.json()['id']}"):
        answer = await client.get(path, headers=viewer)
        assert answer.status_code == 200, (path, answer.text)
    refused = await client.patch(f"/api/v1/sources/{source_id}", headers=viewer,
                                 json={"name": "x"})
    assert refused.status_code == 403
    assert "viewer" in refused.json()["detail"]


async def test_admin_token_may_write(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin, json={"slug": "mine"})
    assert answer.status_code == 201


async def test_ingest_needs_no_token(client, admin):
    await client.post("/api/v1/sources", headers=admin, json={"slug": "open"})
    assert (await client.post("/in/open", content=b"{}")).status_code == 202


async def test_viewer_cannot_read_a_secret(client, admin, viewer):
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    if "/api/v1/endpoints/{endpoint_id}/secret" not in paths:
        pytest.skip("no endpoint secret route yet")
    created = await client.post("/api/v1/endpoints", headers=admin,
                                json={"url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 201, created.text
    path = f"/api/v1/endpoints/{created.json()['id']}/secret"
    assert (await client.get(path, headers=viewer)).status_code == 403
    assert (await client.get(path, headers=admin)).status_code == 200

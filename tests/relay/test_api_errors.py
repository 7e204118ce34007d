"""Errors of the admin API are JSON with `detail`: unparsable JSON 400, invalid input 422
naming the field, never a 500."""

from __future__ import annotations

import pytest

BAD_BODIES = [
    pytest.param(b"{not json", id="broken"),
    pytest.param(b'{"slug": "a",}', id="trailing-comma"),
    pytest.param(b"\xff\xfe", id="not-utf-8"),
    pytest.param(b'{"slug": "a"', id="truncated"),
]


@pytest.mark.parametrize("path", ["/api/v1/sources", "/api/v1/events"])
@pytest.mark.parametrize("body", BAD_BODIES)
async def test_unparsable_json_is_400(client, admin, path, body):
    answer = await client.post(path, headers={**admin, "content-type": "application/json"},
                               content=body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["detail"]


async def test_unparsable_json_on_patch_is_400(client, admin):
    source = (await client.post("/api/v1/sources", headers=admin, json={"slug": "p"})).json()
    answer = await client.patch(f"/api/v1/sources/{source['id']}", content=b"{oops",
                                headers={**admin, "content-type": "application/json"})
    assert answer.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    pytest.param(b"", "body", id="empty"),
    pytest.param(b"[]", "body", id="array"),
    pytest.param(b'"slug"', "body", id="string"),
    pytest.param(b"null", "body", id="null"),
    pytest.param(b'{"slug": 5}', "slug", id="wrong-type"),
])
async def test_wrong_shape_is_422_not_500(client, admin, body, field):
    answer = await client.post("/api/v1/sources", content=body,
                               headers={**admin, "content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["detail"]
    if answer.status_code == 422:
        assert field in answer.json()["detail"]


async def test_422_lists_every_field_problem(client, admin):
    answer = await client.post("/api/v1/sources", headers=admin,
                               json={"slug": "BAD", "max_body_bytes": 0})
    assert answer.status_code == 422
    body = answer.json()
    assert "slug" in body["detail"] and "max_body_bytes" in body["detail"]
    assert {error["field"] for error in body["errors"]} == {"slug", "max_body_bytes"}


async def test_unknown_api_path_is_404(client, admin):
    answer = await client.get("/api/v1/nothing-here", headers=admin)
    assert answer.status_code == 404


async def test_unsupported_method_is_405(client, admin):
    answer = await client.put("/api/v1/sources", headers=admin, json={})
    assert answer.status_code == 405

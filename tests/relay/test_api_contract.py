"""The admin API's error contract: every error is `{"detail", "code", "errors"?}`, an empty
body is 400, messages name the field the client sent, and unknown fields are 422 (a typo
must not silently widen an endpoint)."""

from __future__ import annotations

import pytest

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path", ["/api/v1/sources", "/api/v1/events", "/api/v1/endpoints"])
async def test_an_empty_body_is_400(client, admin, path):
    answer = await client.post(path, headers={**admin, **JSON}, content=b"")
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"detail": "the request body is empty: send a JSON object",
                             "code": "empty_body"}


async def test_a_missing_field_is_named_as_the_client_sends_it(client, admin):
    answer = await client.post("/api/v1/events", headers=admin, json={"event_type": "a"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "payload", "message": "Field required"}]
    assert answer.json()["detail"] == "payload: Field required"
    assert answer.json()["code"] == "invalid"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/sources", {"slug": "a", "slugg": "b"}, "slugg"),
    ("/api/v1/sources", {"slug": "a", "verification": {"kind": "none", "secrt": "x"}},
     "verification.secrt"),
    ("/api/v1/endpoints", {"url": "http://127.0.0.1:9/", "filtr": {"a": 1}}, "filtr"),
    ("/api/v1/events", {"event_type": "a", "payload": {}, "extra": 1}, "extra"),
])
async def test_unknown_fields_are_422_naming_them(client, admin, path, body, field):
    answer = await client.post(path, headers=admin, json=body)
    assert answer.status_code == 422, answer.text
    assert {"field": field, "message": "unknown field (not part of this request)"} in \
        answer.json()["errors"]
    assert field in answer.json()["detail"]


async def test_unknown_fields_on_patch_are_422(client, admin):
    endpoint = (await client.post("/api/v1/endpoints", headers=admin,
                                  json={"url": "http://127.0.0.1:9/"})).json()
    answer = await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin,
                                json={"event_type": ["a"]})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "event_type"


async def test_replay_takes_an_object_only(client, admin):
    published = await client.post("/api/v1/events", headers=admin,
                                  json={"event_type": "a", "payload": {}})
    path = f"/api/v1/events/{published.json()['id']}/replay"
    answer = await client.post(path, headers={**admin, **JSON}, content=b"[]")
    assert answer.status_code == 422, answer.text
    assert (await client.post(path, headers=admin, json={})).status_code == 202


async def test_every_error_has_a_code(client, admin, viewer):
    cases = [
        (await client.get("/api/v1/sources"), 401, "unauthenticated"),
        (await client.get("/api/v1/endpoints/ep_none", headers=admin), 404, "not_found"),
        (await client.post("/api/v1/sources", headers=viewer, json={"slug": "a"}), 403,
         "forbidden"),
        (await client.post("/api/v1/sources", headers={**admin, **JSON}, content=b"{x"), 400,
         "bad_request"),
        (await client.get("/api/v1/events?limit=0", headers=admin), 422, "invalid"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status, answer.text
        assert answer.json()["code"] == code
        assert answer.json()["detail"]


async def test_a_field_named_in_a_422_message_is_in_errors(client, admin):
    answer = await client.get("/api/v1/events?limit=0", headers=admin)
    assert answer.json()["errors"] == [{"field": "limit",
                                        "message": "must be between 1 and 250"}]

"""Server errors the fuzzers found, kept as plain regression tests (each was a 500)."""

from __future__ import annotations

import json

from tests.hooks import signing


async def test_nul_in_a_dedup_key_or_event_type_from_the_body(client, admin):
    created = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "nul-stripe", "verification": {"kind": "stripe", "secret": "s"}})
    assert created.status_code == 201, created.text
    body = json.dumps({"id": "evt\u0000x", "type": "a\u0000b"}).encode()
    answer = await client.post("/in/nul-stripe", content=body, headers=signing.stripe("s", body))
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["dedup_key"] == "evt\ufffdx"
    assert event["event_type"] == "a\ufffdb"
    assert json.loads(event["body"]) == {"id": "evt\u0000x", "type": "a\u0000b"}
    again = await client.post("/in/nul-stripe", content=body, headers=signing.stripe("s", body))
    assert again.status_code == 200 and again.json()["duplicate"] is True


async def test_slugs_no_source_can_have_are_not_found(client):
    for slug in ("%00", "a%00b", "a" * 101):
        answer = await client.post(f"/in/{slug}", content=b"{}")
        assert answer.status_code == 404, (slug, answer.status_code, answer.text)


async def test_nul_in_api_text_is_refused_with_422(client, admin):
    cases = [
        ("POST", "/api/v1/sources", {"slug": "nul-name", "name": "a\u0000b"}),
        ("POST", "/api/v1/events", {"event_type": "a\u0000b", "payload": {}}),
        ("GET", "/api/v1/sources/%00", None),
        ("GET", "/api/v1/events/%00", None),
        ("GET", "/api/v1/events?source=%00", None),
    ]
    for method, path, payload in cases:
        answer = await client.request(method, path, headers=admin, json=payload)
        assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
        assert "detail" in answer.json()


async def test_a_published_payload_may_hold_nul_characters(client, admin):
    answer = await client.post("/api/v1/events", headers=admin,
                               json={"event_type": "t", "payload": {"k": "\u0000"}})
    assert answer.status_code == 202, answer.text

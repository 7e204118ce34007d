"""`POST /in/<slug>`: the answers of the ingest table (accepted, duplicate, 404, 405)."""

from __future__ import annotations

import pytest

from hooks.models import Event
from tests.hooks import signing

BODY = b'{"action": "opened", "number": 7}'


def github_headers(delivery: str = "d-1") -> dict[str, str]:
    return {**signing.github("gh-secret", BODY), "x-github-event": "pull_request",
            "x-github-delivery": delivery, "content-type": "application/json"}


async def test_valid_webhook_is_accepted_with_its_id(client, make_source, event_count):
    await make_source("gh", kind="github", secret="gh-secret")
    answer = await client.post("/in/gh", content=BODY, headers=github_headers())
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"id"}
    event_id = answer.json()["id"]
    assert event_id.startswith("evt_")
    row = await Event.get(id=event_id)
    assert bytes(row.body) == BODY
    assert row.source_slug == "gh"
    assert row.event_type == "pull_request"
    assert await event_count() == 1


async def test_duplicate_answers_200_with_the_first_id_and_creates_nothing(
        client, make_source, event_count):
    await make_source("gh", kind="github", secret="gh-secret")
    first = await client.post("/in/gh", content=BODY, headers=github_headers())
    again = await client.post("/in/gh", content=BODY, headers=github_headers())
    assert first.status_code == 202
    assert again.status_code == 200, again.text
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert await event_count() == 1


async def test_unknown_source_is_404(client, db, event_count):
    answer = await client.post("/in/nobody", content=b"{}")
    assert answer.status_code == 404
    assert "nobody" in answer.json()["detail"]
    assert await event_count() == 0


async def test_disabled_source_is_404_until_enabled(client, admin, make_source, event_count):
    source = await make_source("off", enabled=False)
    assert (await client.post("/in/off", content=b"{}")).status_code == 404
    assert await event_count() == 0
    patched = await client.patch(f"/api/v1/sources/{source['id']}", headers=admin,
                                 json={"enabled": True})
    assert patched.status_code == 200
    assert (await client.post("/in/off", content=b"{}")).status_code == 202
    await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json={"enabled": False})
    assert (await client.post("/in/off", content=b"{}")).status_code == 404
    assert await event_count() == 1


async def test_deleted_source_is_404(client, admin, make_source):
    source = await make_source("gone")
    assert (await client.post("/in/gone", content=b"{}")).status_code == 202
    assert (await client.delete(f"/api/v1/sources/{source['id']}", headers=admin)).status_code == 204
    assert (await client.post("/in/gone", content=b"{}")).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_other_methods_are_405_with_allow(client, make_source, event_count, method):
    await make_source("any")
    answer = await client.request(method, "/in/any")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert await event_count() == 0


async def test_renamed_source_takes_webhooks_at_its_new_slug_only(client, admin, make_source):
    source = await make_source("old-name")
    assert (await client.post("/in/old-name", content=b"{}")).status_code == 202
    await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json={"slug": "new-name"})
    assert (await client.post("/in/old-name", content=b"{}")).status_code == 404
    assert (await client.post("/in/new-name", content=b"{}")).status_code == 202

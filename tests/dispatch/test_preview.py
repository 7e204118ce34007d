"""`POST /api/v1/endpoints/{id}/preview`: what a delivery would send, without sending."""

from __future__ import annotations

import json

from tests.dispatch.conftest import make_endpoint, make_source, post_event, provider_sample


async def _github_event(client, admin) -> str:
    await make_source(client, admin, "gh", event_type={"header": "x-github-event"})
    sample = provider_sample("github.pull_request")
    return await post_event(client, "gh", sample["body"], {"x-github-event": "pull_request"})


async def test_preview_of_a_slack_endpoint(client, admin, platforms):
    event_id = await _github_event(client, admin)
    endpoint = await make_endpoint(client, admin, platforms.url("slack"), kind="slack")

    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/preview", headers=admin,
                               json={"event_id": event_id})
    assert answer.status_code == 200, answer.text
    request = answer.json()["request"]
    assert request["method"] == "POST" and request["url"] == platforms.url("slack")
    assert request["headers"]["content-type"] == "application/json"
    body = json.loads(request["body"])
    assert body["text"].startswith("[Codertocat/Hello-World] Pull request #2 opened")
    assert platforms.accepted == []


async def test_preview_with_an_unsaved_template(client, admin, platforms):
    event_id = await _github_event(client, admin)
    endpoint = await make_endpoint(client, admin, platforms.url("discord"), kind="discord")
    url = f"/api/v1/endpoints/{endpoint['id']}/preview"

    answer = await client.post(url, headers=admin, json={
        "event_id": event_id, "template": {"title": "PR {{ payload.number }}"}})
    assert json.loads(answer.json()["request"]["body"])["embeds"][0]["title"] == "PR 2"

    answer = await client.post(url, headers=admin, json={
        "event_id": event_id, "template": {"title": "{{ payload.number"}})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("template: title: line 1: ")

    answer = await client.post(url, headers=admin, json={
        "event_id": event_id, "template": {"title": "{{ ''.__class__.__mro__ }}"}})
    assert answer.status_code == 422 and "unsafe" in answer.json()["detail"]


async def test_preview_of_an_email_endpoint(client, admin):
    event_id = await _github_event(client, admin)
    endpoint = await make_endpoint(client, admin, "mailto:dev@x.example", kind="email")

    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/preview", headers=admin,
                               json={"event_id": event_id})
    request = answer.json()["request"]
    assert request["to"] == ["dev@x.example"]
    assert request["subject"].startswith("[Codertocat/Hello-World] Pull request #2")
    assert "Author: Codertocat" in request["text"]


async def test_preview_of_a_webhook_transformation(client, admin, sink):
    await make_source(client, admin, "shop")
    event_id = await post_event(client, "shop", {"id": 5})
    endpoint = await make_endpoint(client, admin, sink.url("/p"),
                                   template={"body": '{"n": {{ payload.id }}}'})

    answer = await client.post(f"/api/v1/endpoints/{endpoint['id']}/preview", headers=admin,
                               json={"event_id": event_id})
    request = answer.json()["request"]
    assert request["body"] == '{"n": 5}'
    assert request["headers"]["webhook-id"] == event_id
    assert request["headers"]["webhook-signature"].startswith("v1,")
    assert sink.count() == 0


async def test_preview_errors(client, admin, viewer, sink):
    endpoint = await make_endpoint(client, admin, sink.url("/p"))
    url = f"/api/v1/endpoints/{endpoint['id']}/preview"
    missing = await client.post(url, headers=admin, json={"event_id": "evt_nope"})
    assert missing.status_code == 404 and "evt_nope" in missing.json()["detail"]
    nobody = await client.post("/api/v1/endpoints/ep_nope/preview", headers=admin,
                               json={"event_id": "evt_nope"})
    assert nobody.status_code == 404
    assert (await client.post(url, headers=admin, json={})).status_code == 422
    assert (await client.post(url, headers=viewer, json={"event_id": "x"})).status_code == 403


async def test_templates_are_checked_when_stored(client, admin, sink):
    answer = await client.post("/api/v1/endpoints", headers=admin, json={
        "url": sink.url("/x"), "kind": "slack", "template": {"text": "a\n{% for %}"}})
    assert answer.status_code == 422
    assert "template: text: line 2: " in answer.json()["detail"]
    bad_kind = await client.post("/api/v1/endpoints", headers=admin, json={
        "url": sink.url("/x"), "kind": "pager"})
    assert bad_kind.status_code == 422 and "kind" in bad_kind.json()["detail"]
    cli = await client.post("/api/v1/endpoints", headers=admin, json={
        "url": sink.url("/x"), "kind": "cli"})
    assert cli.status_code == 201
    endpoint = await make_endpoint(client, admin, sink.url("/x"), kind="teams",
                                   template={"title": "{{ event.id }}"})
    assert endpoint["kind"] == "teams" and endpoint["template"] == {"title": "{{ event.id }}"}
    cleared = await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin,
                                 json={"template": None})
    assert cleared.json()["template"] is None

"""Notification endpoints end to end: the dispatcher posts each platform's documented
payload to loopback fakes that validate it, honours their rate-limit answers, and
disables an endpoint whose webhook was deleted."""

from __future__ import annotations

import json

from tests.dispatch.conftest import (
    make_endpoint,
    make_source,
    post_event,
    provider_sample,
    wait_for_statuses,
)
from tests.servers import wait_until


async def github_push(client, slug: str = "gh") -> str:
    sample = provider_sample("github.push")
    headers = {k: v for k, v in sample["headers"].items() if k.startswith("x-github")}
    return await post_event(client, slug, sample["body"], headers)


async def test_each_kind_gets_its_platform_payload(client, admin, platforms, dispatcher):
    await make_source(client, admin, "gh", event_type={"header": "x-github-event"})
    for kind in ("slack", "discord", "teams"):
        await make_endpoint(client, admin, platforms.url(kind), kind=kind)
    event_id = await github_push(client)

    await wait_for_statuses("succeeded", 3, event_id=event_id)
    assert platforms.refused == []
    [slack] = platforms.of("slack")
    assert slack.payload["text"].startswith("[Codertocat/Hello-World] 1 new commit to ")
    [discord] = platforms.of("discord")
    assert discord.payload["embeds"][0]["title"] == slack.payload["text"]
    [teams] = platforms.of("teams")
    card = teams.payload["attachments"][0]["content"]
    assert card["body"][0]["text"] == slack.payload["text"]
    for got in (slack, discord, teams):
        assert got.headers["content-type"] == "application/json"
        assert not any(name.startswith(("webhook-", "x-github", "x-relay-"))
                       for name in got.headers), got.headers


async def test_a_template_shapes_the_message(client, admin, platforms, dispatcher):
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, platforms.url("slack"), kind="slack", template={
        "title": "Order {{ payload.id }} paid", "fields": {"Total": "{{ payload.total }} €"}})
    await post_event(client, "shop", {"id": 42, "total": "9.50"})

    await wait_until(lambda: len(platforms.of("slack")) == 1, message="the Slack message")
    [got] = platforms.of("slack")
    assert got.payload["text"] == "Order 42 paid"
    assert got.payload["blocks"][-1]["fields"] == [{"type": "mrkdwn", "text": "*Total*\n9.50 €"}]


async def test_slack_429_is_retried_after_retry_after(client, admin, platforms,
                                                      start_dispatcher):
    from dispatch.models import Attempt

    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, platforms.url("slack"), kind="slack",
                        retry_schedule=[0.5, 0.5])
    platforms.rate_limit["/slack/hook"] = 1
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    first, second = await Attempt.filter(delivery_id=delivery.id).order_by("number")
    assert first.status_code == 429 and first.response_headers["retry-after"] == "30"
    # Retry-After is honoured up to twice the scheduled delay (0.5 s ± 20 %).
    assert (second.started_at - first.started_at).total_seconds() >= 0.8


async def test_discord_retry_after_in_the_body_is_honoured(client, admin, platforms,
                                                           start_dispatcher):
    from dispatch.models import Attempt

    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, platforms.url("discord"), kind="discord",
                        retry_schedule=[0.5, 0.5])
    platforms.rate_limit["/discord/hook"] = 1
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    first, second = await Attempt.filter(delivery_id=delivery.id).order_by("number")
    assert first.status_code == 429 and "retry-after" not in first.response_headers
    assert json.loads(first.response_body)["retry_after"] == 30.5
    assert (second.started_at - first.started_at).total_seconds() >= 0.8


async def test_a_deleted_slack_webhook_disables_the_endpoint_after_the_schedule(
        client, admin, platforms, dispatcher):
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, platforms.url("slack", "gone"), kind="slack",
                                   retry_schedule=[0.05, 0.05])
    platforms.deleted.add("/slack/gone")
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 3 and delivery.last_status_code == 404
    answer = await client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)
    assert answer.json()["enabled"] is False
    assert answer.json()["disabled_reason"] == (
        "the Slack webhook answered 404 Not Found: it was deleted or its URL is wrong")


async def test_a_template_that_fails_to_render_fails_the_delivery_without_retries(
        client, admin, platforms, dispatcher):
    from dispatch.models import Attempt

    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, platforms.url("discord"), kind="discord",
                        template={"title": "{{ payload.total / 0 }}"})
    event_id = await post_event(client, "shop", {"total": 5})

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 1 and delivery.last_error == "template"
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.error == "template"
    assert attempt.error_detail == "title: ZeroDivisionError: division by zero"
    assert platforms.accepted == []


async def test_a_webhook_transformation_replaces_the_body_and_is_signed(
        client, admin, sink, dispatcher):
    from standardwebhooks import Webhook

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/t"), template={
        "body": '{"order": {{ payload.id }}, "source": {{ event.source | tojson }}}'})
    await post_event(client, "shop", {"id": 7, "secret": "not forwarded"})

    await wait_until(lambda: sink.count("/t") == 1, message="the transformed body")
    [got] = sink.received("/t")
    assert json.loads(got.body) == {"order": 7, "source": "shop"}
    Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_a_transformation_rendering_invalid_json_fails_clearly(client, admin, sink,
                                                                     dispatcher):
    from dispatch.models import Attempt

    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, sink.url("/bad"), template={"body": "{{ payload.id }},"})
    event_id = await post_event(client, "shop", {"id": 7})

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.error_detail.startswith(
        "body: the template rendered invalid JSON (the event's content type is "
        "application/json): ")
    assert sink.count("/bad") == 0


async def test_the_ssrf_guard_applies_to_notification_kinds(client, admin, dispatcher):
    from dispatch.models import Attempt, Endpoint

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, "http://localhost:9/slack", kind="slack",
                                   retry_schedule=[])
    await Endpoint.filter(id=endpoint["id"]).update(url="http://127.0.0.2:9/slack")
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.error == "ssrf_blocked"

"""The notifications page in a real browser: a Slack endpoint for GitHub pushes in a
minute, its template edited with a live preview against a stored push, an email alert."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.dispatch.conftest import platforms, post_event, provider_sample  # noqa: F401
from tests.live.conftest import ARTIFACTS, CHROMIUM, make_source

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: apt-get install -y chromium")


async def test_slack_endpoint_for_github_pushes_and_an_email_alert(
        client, admin, admin_token, relay_server, live_bus, platforms, open_dashboard):  # noqa: F811
    await make_source(client, admin, "github", event_type={"header": "x-github-event"})
    sample = provider_sample("github.push")
    event_id = await post_event(client, "github", sample["body"], {"x-github-event": "push"})
    page, console = await open_dashboard(admin_token, viewport={"width": 1280, "height": 1000})
    await page.click("nav >> text=Notifications")
    await page.wait_for_url(f"{relay_server}/dashboard/notify")

    # A Slack endpoint for GitHub pushes: the kind, the URL, the event type.
    await page.select_option("#ep-kind", "slack")
    await page.fill("#ep-url", platforms.url("slack"))
    await page.fill("#ep-types", "push")
    await page.fill("#ep-sources", "github")
    await page.click("#ep-create")
    await expect(page.locator("#ep-result")).to_contain_text("Created ep_")
    slack_id = await page.get_attribute("#ep-result", "data-endpoint")
    endpoint = (await client.get(f"/api/v1/endpoints/{slack_id}", headers=admin)).json()
    assert endpoint["kind"] == "slack" and endpoint["event_types"] == ["push"]
    assert endpoint["sources"] == ["github"] and endpoint["template"] is None

    # The editor previews the stored push with the preset, then with an edited title.
    await expect(page.locator("#tpl-endpoint")).to_have_value(slack_id)
    await expect(page.locator("#tpl-event")).to_have_value(event_id)
    await expect(page.locator("#tpl-preview")).to_contain_text(
        '"text": "[Codertocat/Hello-World] 1 new commit to')
    await page.fill("#tpl-title", "{{ payload.pusher.name }} pushed to {{ payload.ref }}")
    await expect(page.locator("#tpl-preview")).to_contain_text('"text": "Codertocat pushed to refs/heads/')
    await page.fill("#tpl-text", "{{ payload.nope(")
    await expect(page.locator("#tpl-error")).to_contain_text("template: text: line 1:")
    await page.fill("#tpl-text", "")
    await expect(page.locator("#tpl-error")).to_be_hidden()
    await page.click("#tpl-save")
    await expect(page.locator("#toasts")).to_contain_text("Template saved")
    endpoint = (await client.get(f"/api/v1/endpoints/{slack_id}", headers=admin)).json()
    assert endpoint["template"] == {"title": "{{ payload.pusher.name }} pushed to {{ payload.ref }}"}

    # An email endpoint, and an alert that mails it when deliveries fail.
    await page.select_option("#ep-kind", "email")
    await page.fill("#ep-url", "mailto:ops@x.example")
    await page.click("#ep-create")
    await expect(page.locator("#ep-result")).to_contain_text("Created ep_")
    email_id = await page.get_attribute("#ep-result", "data-endpoint")
    await page.fill("#al-name", "Deliveries failing")
    await page.select_option("#al-type", "delivery.failed")
    await page.select_option("#al-notify", email_id)
    await page.click("#al-create")
    await expect(page.locator("#alerts li[data-alert]")).to_have_count(1)
    [alert] = (await client.get("/api/v1/alerts", headers=admin)).json()["data"]
    assert alert["name"] == "Deliveries failing" and alert["notify"] == [email_id]
    assert alert["conditions"] == [{"type": "delivery.failed", "endpoints": []}]

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "notify.png"), full_page=True)
    # The browser logs the preview's 422 for the broken template typed above; nothing else.
    assert [e for e in console.errors if not ("422" in e and "/preview" in e)] == []

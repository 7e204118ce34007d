"""Defects found by a new user, each checked in a real browser: idle tiles, the feed filter,
the retry offer, replay labels, the reason a delivery waits, the 404 page, an unreachable
server, one time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from dispatch.models import Delivery
from tests.live.conftest import CHROMIUM
from tests.live.test_console_browser import failed_delivery, make_endpoint, millis, stored_event

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: apt-get install -y chromium")


async def test_idle_tiles_say_nothing_was_delivered(db, admin_token, live_bus, open_dashboard):
    from kernel.bus import publish

    page, console = await open_dashboard(admin_token)
    publish({"type": "stats", "stats": {"events_per_s": 0, "deliveries_per_s": 0,
                                        "success_rate": 0, "pending": 0, "in_flight": 0,
                                        "p50_ms": 5007, "p95_ms": 5007}})
    await expect(page.locator("#stat-events")).to_have_text("0")
    assert await page.text_content("#stat-success") == "—"
    assert await page.text_content("#stat-p50") == "—"
    publish({"type": "stats", "stats": {"events_per_s": 2, "deliveries_per_s": 2,
                                        "success_rate": 0.5, "pending": 0, "in_flight": 0,
                                        "p50_ms": 40, "p95_ms": 90}})
    await expect(page.locator("#stat-success")).to_have_text("50.0%")
    assert await page.text_content("#stat-p50") == "40.0 ms"


async def test_the_feed_filter_also_narrows_the_rows_already_shown(db, admin_token, live_bus,
                                                                    open_dashboard):
    from kernel.bus import publish

    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    for n, source in enumerate(("shop", "bank", "shop")):
        publish({"type": "event.received", "event": {
            "id": f"evt_feed{n:022d}", "source": source, "event_type": "order.paid",
            "received_at": datetime.now(UTC).isoformat(), "size": 10}})
    publish({"type": "delivery.attempted", "delivery": {
        "id": "dlv_1", "event_id": "evt_feed0000000000000000000000", "endpoint_id": "ep_a",
        "status": "retrying", "attempt": 1, "status_code": 503, "duration_ms": 10.0,
        "error": None, "next_attempt_at": datetime.now(UTC).isoformat()}})
    await expect(page.locator("#feed .feed-row")).to_have_count(4)
    badge = page.locator('#feed .feed-row[data-type="delivery.attempted"] .badge')
    assert await badge.evaluate("node => node.scrollWidth <= node.parentElement.clientWidth")
    await page.fill("#feed-filter input[name=sources]", "shop")
    await page.uncheck("#feed-filter input[value='delivery.attempted']")
    await page.click("#feed-filter button[type=submit]")
    await expect(page.locator("#feed .feed-row")).to_have_count(2)
    assert set(await page.locator("#feed .feed-row").evaluate_all(
        "rows => rows.map(r => r.querySelector('.c-where').textContent)")) == {"shop"}
    assert console.errors == []


async def test_replays_are_labelled_and_only_unfinished_deliveries_offer_retry(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/x")
    at = datetime.now(UTC) - timedelta(hours=3)
    event = await stored_event(at)
    await failed_delivery(event, endpoint["id"], at)
    await Delivery.create(id=f"dlv_{'1' * 10}{'0' * 16}".replace("1" * 10, "zzzzzzzzzz"),
                          event_id=event, endpoint_id=endpoint["id"], status="succeeded",
                          attempts_count=1, created_at=at + timedelta(hours=1))
    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    await page.goto(f"{relay_server}/dashboard/events#event={event}")
    await expect(page.locator("#inspector .delivery")).to_have_count(2)
    failed = page.locator('#inspector .delivery[data-status="failed"]')
    succeeded = page.locator('#inspector .delivery[data-status="succeeded"]')
    assert await failed.locator("button[data-action=retry]").count() == 1
    assert await succeeded.locator("button[data-action=retry]").count() == 0
    assert "replay" in await succeeded.locator(".delivery-head").text_content()
    assert "replay" not in await failed.locator(".delivery-head").text_content()
    assert "1 attempt" in await succeeded.locator(".delivery-head").text_content()
    assert "1 attempts" not in await succeeded.locator(".delivery-head").text_content()
    received = await page.text_content("#inspector dl.kv dd:nth-of-type(3)")
    assert received and "AM" not in received and "PM" not in received
    assert console.errors == []


async def test_a_delivery_held_by_a_disabled_endpoint_says_why(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/x")
    disabled = await client.post(f"/api/v1/endpoints/{endpoint['id']}/disable", headers=admin)
    assert disabled.json()["disabled_reason"] == "disabled through the API by test admin"
    at = datetime.now(UTC) - timedelta(minutes=5)
    event = await stored_event(at)
    await Delivery.create(id=f"dlv_{millis(at)}", event_id=event, endpoint_id=endpoint["id"],
                          status="pending", created_at=at)
    page, console = await open_dashboard(admin_token)
    await page.goto(f"{relay_server}/dashboard/events#event={event}")
    await expect(page.locator("#inspector .waiting")).to_contain_text("the endpoint is disabled")
    assert "0 attempts" in await page.text_content("#inspector .delivery-head")
    assert console.errors == []


async def test_the_dashboard_404_page_is_styled(client, admin_token, relay_server,
                                               open_dashboard):
    answer = await client.get("/dashboard/no-such-page")
    assert answer.status_code == 404
    assert "dashboard.css" in answer.text and "Not found" in answer.text
    page, console = await open_dashboard(admin_token)
    response = await page.goto(f"{relay_server}/dashboard/no-such-page")
    assert response.status == 404
    assert await page.text_content("h1") == "Not found"
    assert await page.locator("nav a[href='/dashboard/events']").count() == 1


async def test_an_unreachable_server_is_said_in_words(db, admin_token, relay_server, live_bus,
                                                      open_dashboard):
    page, console = await open_dashboard(admin_token)
    await page.goto(f"{relay_server}/dashboard/events")
    await page.wait_for_selector("#events-empty:not([hidden])")
    await page.route("**/api/v1/**", lambda route: route.abort())
    await page.click("#event-filters button[type=submit]")
    await expect(page.locator("#filters-error")).to_have_text("Relay is not reachable, retrying…")
    assert "Failed to fetch" not in await page.text_content("body")

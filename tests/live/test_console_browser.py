"""The operations console in a real browser: find last night's failed event by filter and
open it, bulk-retry an endpoint's failures and watch them succeed live, create and edit an
endpoint with the API's validation errors beside the field, history charts after a reload,
the logs on a phone."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from dispatch.models import Attempt, Delivery
from hooks.models import Event
from kernel.ids import id_at
from tests.live.conftest import ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: apt-get install -y chromium")

YESTERDAY_NIGHT = (datetime.now(UTC) - timedelta(days=1)).replace(hour=2, minute=30, second=0,
                                                                  microsecond=0)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def stored_event(at: datetime, event_type: str = "order.paid", source: str = "shop",
                       payload: dict | None = None) -> str:
    body = json.dumps(payload or {"type": event_type}).encode()
    row = await Event.create(id=id_at("evt", millis(at)), source_slug=source,
                             event_type=event_type, received_at=at, body=body, size=len(body),
                             content_type="application/json",
                             headers={"content-type": "application/json"})
    return row.id


async def failed_delivery(event_id: str, endpoint_id: str, at: datetime) -> str:
    delivery = await Delivery.create(id=id_at("dlv", millis(at)), event_id=event_id,
                                     endpoint_id=endpoint_id, status="failed", attempts_count=2,
                                     last_status_code=503, created_at=at, completed_at=at)
    for number, status in ((1, 500), (2, 503)):
        await Attempt.create(id=id_at("att", millis(at) + number), delivery_id=delivery.id,
                             endpoint_id=endpoint_id, number=number,
                             started_at=at + timedelta(minutes=number), duration_ms=12.0,
                             status_code=status, request_headers={"x-relay-attempt": str(number)},
                             response_headers={"retry-after": str(number * 10)},
                             response_body=f"down ({status})")
    return delivery.id


async def make_endpoint(client, admin, url: str, **fields) -> dict:
    answer = await client.post("/api/v1/endpoints", headers=admin, json={"url": url, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def unexpected(console, *expected: str) -> list[str]:
    """The console errors besides the failed loads a test provokes on purpose (Chromium logs
    every 4xx answer of a fetch)."""
    return [error for error in console.errors
            if not (error.startswith("console: Failed to load resource")
                    and any(fragment in error for fragment in expected))]


async def no_sideways_scroll(page) -> None:
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways ({overflow}px)"


async def test_find_last_nights_failed_event_by_filter_and_open_it(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/orders")
    failed = await stored_event(YESTERDAY_NIGHT, payload={"type": "order.paid", "total": 4200})
    await failed_delivery(failed, endpoint["id"], YESTERDAY_NIGHT)
    fine = await stored_event(YESTERDAY_NIGHT + timedelta(minutes=5))
    await Delivery.create(id=id_at("dlv", millis(YESTERDAY_NIGHT) + 5), event_id=fine,
                          endpoint_id=endpoint["id"], status="succeeded", attempts_count=1,
                          created_at=YESTERDAY_NIGHT)
    await stored_event(datetime.now(UTC) - timedelta(minutes=1))

    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    await page.click("nav >> text=Events")
    await page.wait_for_url(f"{relay_server}/dashboard/events")
    await expect(page.locator("#events tr")).to_have_count(3)
    await page.select_option("#event-filters select[name=status]", "failed")
    await page.click("[data-quick=yesterday]")
    await page.wait_for_url("**/dashboard/events?*")
    await page.select_option("#event-filters select[name=status]", "failed")
    await page.click("#event-filters button[type=submit]")
    await expect(page.locator("#events tr")).to_have_count(1)
    assert await page.get_attribute("#events tr", "data-event") == failed
    assert "status=failed" in page.url and "since=" in page.url and "until=" in page.url

    deep_link = page.url
    await page.goto(deep_link)
    await expect(page.locator(f'#events tr[data-event="{failed}"]')).to_have_count(1)
    assert await page.input_value("#event-filters select[name=status]") == "failed"

    await page.click(f'#events button[data-event="{failed}"]')
    await page.wait_for_selector('#inspector:not([hidden]) .delivery[data-status="failed"]')
    assert '"total": 4200' in await page.text_content("#inspector pre[data-kind=json]")
    head = await page.text_content("#inspector .delivery-head")
    assert "2 attempts" in head and "Retry now" in head
    await page.click("#inspector .attempt-diff summary")
    diff = await page.text_content("#inspector .attempt-diff")
    assert "HTTP 500" in diff and "HTTP 503" in diff and "response retry-after" in diff
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "events-failed-yesterday.png"))

    await page.goto(f"{relay_server}/dashboard/events#event=evt_00000000000000000000000000")
    await page.wait_for_selector("#inspector [data-missing]")
    assert await page.is_hidden("#inspector-replay")
    assert unexpected(console, "404 (Not Found) (http://127.0.0.1") == []


async def test_bulk_retry_of_an_endpoints_failures_succeeds_live(
        client, admin, admin_token, relay_server, live_bus, running_dispatcher, sink,
        open_dashboard):
    endpoint = await make_endpoint(client, admin, sink.url(), description="Orders service")
    for n in range(3):
        event = await stored_event(YESTERDAY_NIGHT + timedelta(minutes=n))
        await failed_delivery(event, endpoint["id"], YESTERDAY_NIGHT + timedelta(minutes=n))

    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    await page.click(f'#endpoints tr[data-endpoint="{endpoint["id"]}"] a.endpoint-url')
    await page.wait_for_url(f"{relay_server}/dashboard/endpoints/{endpoint['id']}")
    await expect(page.locator('#deliveries tr[data-status="failed"]')).to_have_count(3)
    assert "2 attempts" in await page.text_content("#deliveries tr")
    await page.click("#bulk-retry")
    await page.wait_for_selector("#confirm-dialog[open]")
    assert "Retry 3 failed deliveries" in await page.text_content("#confirm-text")
    assert sink.count() == 0, "a dry run must not send anything"
    await page.click("#confirm-ok")
    await expect(page.locator('#deliveries tr[data-status="succeeded"]')).to_have_count(
        3, timeout=15000)
    assert sink.count() == 3
    await page.screenshot(path=str(ARTIFACTS / "endpoint-bulk-retry.png"))
    assert console.errors == []


async def test_create_and_edit_an_endpoint_with_errors_beside_the_field(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    await page.click("#new-endpoint")
    await page.fill("#ep-url", "ftp://example.invalid/hook")
    await page.fill("#ep-filter", '{"data.total": {"$regex": "4.*"}}')
    await page.click("#endpoint-submit")
    url_error = page.locator('.field[data-field="url"] .field-error')
    await expect(url_error).to_be_visible()
    assert "http" in (await url_error.text_content())
    assert await page.get_attribute("#ep-url", "aria-invalid") == "true"
    assert not (await url_error.text_content()).startswith("Value error")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "endpoint-form.png"))

    await page.fill("#ep-url", "http://127.0.0.1:9/orders")
    await page.click("#endpoint-submit")
    filter_error = page.locator('.field[data-field="filter"] .field-error')
    await expect(filter_error).to_be_visible()
    assert "$regex" in (await filter_error.text_content())
    await expect(url_error).to_have_count(0)

    await page.fill("#ep-filter", "{not json")
    await page.click("#endpoint-submit")
    await expect(filter_error).to_have_text("not valid JSON")

    await page.fill("#ep-filter", '{"data.total": {"$gt": 100}}')
    await page.fill("#ep-types", "order.*")
    await page.fill("#ep-retry", "5, 60")
    await page.fill("#ep-headers", '{"x-team": "orders"}')
    await page.click("#endpoint-submit")
    await page.wait_for_selector("#secret-dialog[open]")
    assert (await page.text_content("#secret-value")).startswith("whsec_")
    await page.click("#secret-dialog [data-close]")
    row = page.locator("#endpoints tr[data-endpoint]")
    await expect(row).to_have_count(1)
    endpoint_id = await row.get_attribute("data-endpoint")

    await page.goto(f"{relay_server}/dashboard/endpoints/{endpoint_id}")
    await page.click("#endpoint-actions button[data-action=edit]")
    assert await page.input_value("#ep-retry") == "5, 60"
    assert json.loads(await page.input_value("#ep-filter")) == {"data.total": {"$gt": 100}}
    await page.fill("#ep-inflight", "0")
    await page.fill("#ep-description", "Orders, edited")
    await page.click("#endpoint-submit")
    await expect(page.locator('.field[data-field="max_in_flight"] .field-error')).to_be_visible()
    await page.fill("#ep-inflight", "4")
    await page.click("#endpoint-submit")
    await expect(page.locator("#endpoint-description")).to_contain_text("Orders, edited")
    stored = (await client.get(f"/api/v1/endpoints/{endpoint_id}", headers=admin)).json()
    assert stored["max_in_flight"] == 4 and stored["retry_schedule"] == [5, 60]
    assert stored["headers"] == {"x-team": "orders"} and stored["event_types"] == ["order.*"]

    await page.click("#endpoint-actions button[data-action=disable]")
    await page.wait_for_selector("#confirm-dialog[open]")
    await page.click("#confirm-ok")
    await expect(page.locator("#endpoint-state")).to_contain_text(
        "disabled from the dashboard by test admin")
    await page.click("#endpoint-actions button[data-action=delete]")
    await page.click("#confirm-ok")
    await page.wait_for_url(f"{relay_server}/dashboard/")
    assert (await client.get(f"/api/v1/endpoints/{endpoint_id}", headers=admin)).status_code == 404
    assert unexpected(console, "422 (Unprocessable Entity)") == []


async def test_the_charts_keep_their_history_after_a_reload(
        client, admin, admin_token, relay_server, live_bus, running_dispatcher, sink,
        open_dashboard):
    probe = await client.get("/api/v1/stats/series?metric=events", headers=admin)
    if probe.status_code == 404:
        pytest.skip("this build has no /api/v1/stats/series (rolled-up aggregates) yet")
    await make_endpoint(client, admin, sink.url())
    await client.post("/api/v1/sources", headers=admin, json={"slug": "shop"})
    for n in range(5):
        answer = await client.post("/in/shop", json={"type": "order.paid", "n": n})
        assert answer.status_code == 202
    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    points = re.compile(r"^[1-9]")
    await expect(page.locator("body")).to_have_attribute("data-chart-points", points,
                                                         timeout=15000)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-chart-points", points)
    box = await page.locator("#chart-throughput").bounding_box()
    await page.mouse.move(box["x"] + box["width"] - 12, box["y"] + box["height"] / 2)
    await expect(page.locator("#chart-throughput")).to_have_attribute(
        "data-hover", re.compile(r"events/s: \d"))
    await page.click("[data-range='24h']")
    await expect(page.locator("body")).to_have_attribute("data-chart-points", points)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-history.png"))
    assert console.errors == []


async def test_the_logs_on_a_phone(client, admin, admin_token, relay_server, live_bus,
                                   open_dashboard):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/a-rather-long-path/for/"
                                   "the/orders-service/webhooks")
    for n in range(3):
        event = await stored_event(YESTERDAY_NIGHT + timedelta(minutes=n),
                                   event_type="invoice.payment_failed.with.a.long.name")
        await failed_delivery(event, endpoint["id"], YESTERDAY_NIGHT + timedelta(minutes=n))
    page, console = await open_dashboard(admin_token, viewport={"width": 390, "height": 844},
                                         is_mobile=True, has_touch=True)
    await page.goto(f"{relay_server}/dashboard/events?status=failed")
    await expect(page.locator("#events tr")).to_have_count(3)
    await no_sideways_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "events-phone.png"), full_page=True)
    await page.locator("#events button[data-event]").first.click()
    await page.wait_for_selector("#inspector:not([hidden]) .delivery")
    await no_sideways_scroll(page)
    await page.screenshot(path=str(ARTIFACTS / "inspector-phone.png"))
    await page.goto(f"{relay_server}/dashboard/endpoints/{endpoint['id']}")
    await expect(page.locator("#deliveries tr")).to_have_count(3)
    await no_sideways_scroll(page)
    await page.screenshot(path=str(ARTIFACTS / "endpoint-phone.png"), full_page=True)
    assert console.errors == []


async def test_new_events_matching_the_filters_appear_live(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    for slug in ("shop", "bank"):
        answer = await client.post("/api/v1/sources", headers=admin, json={"slug": slug, "event_type": {"json_path": "type"}})
        assert answer.status_code == 201, answer.text
    page, console = await open_dashboard(admin_token, viewport={"width": 1440, "height": 900})
    await page.goto(f"{relay_server}/dashboard/events?source=shop&event_type=order.*")
    await page.wait_for_selector("#connection[data-state=live]")
    await page.wait_for_selector("#events-empty:not([hidden])")
    wanted = (await client.post("/in/shop", json={"type": "order.paid"})).json()["id"]
    other = (await client.post("/in/bank", json={"type": "order.paid"})).json()["id"]
    await expect(page.locator(f'#events tr[data-event="{wanted}"]')).to_have_count(1)
    assert await page.locator(f'#events tr[data-event="{other}"]').count() == 0
    assert await page.locator("#events tr").count() == 1
    assert console.errors == []

"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): log in, watch
a webhook arrive live, inspect it, replay it; a viewer sees no actions; no console errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.live.conftest import ARTIFACTS, CHROMIUM, make_source, post_webhook

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: apt-get install -y chromium")


async def test_an_admin_sees_a_webhook_arrive_inspects_and_replays_it(
        client, admin, admin_token, relay_server, live_bus, running_dispatcher, sink,
        open_dashboard):
    await make_source(client, admin, "shop", name="Shop")
    created = await client.post("/api/v1/endpoints", headers=admin,
                                json={"url": sink.url(), "description": "Orders service"})
    assert created.status_code == 201, created.text
    page, console = await open_dashboard(admin_token, viewport={"width": 1280, "height": 900})
    await page.wait_for_selector("#endpoints tr[data-endpoint]")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    started = time.monotonic()
    event_id = await post_webhook(client, "shop", {"type": "order.paid", "data": {"amount": 4200}})
    await page.wait_for_selector(
        f'#feed .feed-row[data-type="event.received"][data-event="{event_id}"]', timeout=1000)
    assert time.monotonic() - started < 1.0, "the webhook must show in the live feed within 1 s"
    await page.wait_for_selector(
        f'#feed .feed-row[data-type="delivery.succeeded"][data-event="{event_id}"]', timeout=10000)

    await page.focus(f'#feed .feed-row[data-type="event.received"] button[data-event="{event_id}"]')
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#inspector:not([hidden]) pre[data-kind=json]")
    assert '"amount": 4200' in await page.text_content("#inspector pre[data-kind=json]")
    await page.wait_for_selector("#inspector .delivery .attempt")
    assert await page.locator("#inspector .delivery").count() == 1

    await page.click("#inspector-replay")
    await expect(page.locator("#inspector .delivery")).to_have_count(2, timeout=10000)
    await expect(page.locator("#inspector .delivery:not(:has(.attempt))")).to_have_count(
        0, timeout=10000)
    await expect(page.locator(
        f'#feed .feed-row[data-type="delivery.succeeded"][data-event="{event_id}"]')).to_have_count(2)
    delivered = sink.received()
    assert len(delivered) == 2 and delivered[0].delivery_id != delivered[1].delivery_id
    stray = await page.locator("#inspector-body").evaluate(
        "body => [...body.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)")
    assert stray == [], f"stray text in the inspector: {stray}"

    await page.keyboard.press("Escape")
    await page.wait_for_selector("#inspector", state="hidden")

    binary = await post_webhook(client, "shop", bytes(range(256)), "application/octet-stream")
    await page.goto(f"{relay_server}/dashboard/#event={binary}")
    await page.wait_for_selector("#inspector pre[data-kind=hex]")
    assert (await page.text_content("#inspector pre[data-kind=hex]")).startswith(
        "00000000  00 01 02 03")
    await page.click("#inspector-close")

    for n in range(12):
        await post_webhook(client, "shop", {"type": f"order.{'paid' if n % 3 else 'created'}",
                                            "n": n})
    await expect(page.locator("#stat-events")).not_to_have_text("–", timeout=5000)
    await page.wait_for_selector("#endpoints tr[data-endpoint] .badge-ok")
    # The health table comes from one request for every endpoint, not one per endpoint.
    await expect(page.locator('#endpoints tr[data-endpoint] td[data-label="Success"]')
                 ).to_contain_text("attempts", timeout=15000)
    assert any(url.endswith("/api/v1/stats/endpoints") for url in requested)
    assert not [url for url in requested if url.endswith("/stats") and "/endpoints/" in url]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    await page.set_viewport_size({"width": 390, "height": 844})
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways on a phone ({overflow}px)"
    await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"))
    assert console.errors == []


async def test_a_viewer_sees_everything_but_no_action(client, admin, viewer_token, relay_server,
                                                      live_bus, open_dashboard):
    await make_source(client, admin, "shop")
    created = await client.post("/api/v1/endpoints", headers=admin,
                                json={"url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 201, created.text
    page, console = await open_dashboard(viewer_token)
    await page.wait_for_selector("#endpoints tr[data-endpoint]")
    event_id = await post_webhook(client, "shop")
    await page.click(f'#feed button[data-event="{event_id}"]', timeout=2000)
    await page.wait_for_selector("#inspector:not([hidden]) pre[data-kind=json]")
    assert await page.locator("button.action, #new-endpoint, #inspector-replay").count() == 0
    assert "viewer" in await page.text_content(".who")

    await page.goto(f"{relay_server}/dashboard/sources")
    await page.wait_for_selector("[data-source=shop] .ingest-url code")
    assert (await page.text_content("[data-source=shop] .ingest-url code")).endswith("/in/shop")
    assert console.errors == []


async def test_the_sources_page_lists_refused_requests_with_their_reason(
        client, admin, admin_token, relay_server, live_bus, open_dashboard):
    await make_source(client, admin, "bank",
                      verification={"kind": "token", "secret": "s3cret", "header": "x-token"})
    page, console = await open_dashboard(admin_token)
    await page.goto(f"{relay_server}/dashboard/sources")
    await page.wait_for_selector("[data-source=bank] .rejected")
    await page.wait_for_selector("#connection[data-state=live]", timeout=5000)
    refused = await client.post("/in/bank", content=b"{}", headers={"x-token": "wrong"})
    assert refused.status_code == 401
    await page.wait_for_selector("[data-source=bank] table.rejected tbody tr", timeout=5000)
    reason = await page.text_content("[data-source=bank] table.rejected tbody tr td:nth-child(2)")
    assert reason and reason.strip()
    assert console.errors == []


async def test_the_feed_stays_smooth_at_1000_events_per_second(db, admin_token, live_bus,
                                                                open_dashboard):
    """1,000 events/s and 2,000 delivery messages/s for 2 s: the page keeps drawing frames
    (median gap at most two frames at 60 Hz) and the feed keeps its 200 newest rows."""
    import asyncio

    from kernel.bus import publish

    page, console = await open_dashboard(admin_token, viewport={"width": 1280, "height": 900})
    await page.evaluate("""() => {
        window.__frames = [];
        const tick = (t) => { window.__frames.push(t); requestAnimationFrame(tick); };
        requestAnimationFrame(tick);
    }""")
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while (elapsed := loop.time() - started) < 2.0:
        for _ in range(int(elapsed * 1000) - sent):
            n = sent = sent + 1
            publish({"type": "event.received", "event": {
                "id": f"evt_load{n:06d}", "source": "load", "event_type": "order.paid",
                "received_at": "2026-01-01T00:00:00+00:00", "size": 120}})
            delivery = {"id": f"dlv_load{n:06d}", "event_id": f"evt_load{n:06d}",
                        "endpoint_id": "ep_load", "status": "succeeded", "attempt": 1,
                        "status_code": 200, "duration_ms": 12.5, "error": None,
                        "next_attempt_at": None}
            publish({"type": "delivery.attempted", "delivery": delivery})
            publish({"type": "delivery.succeeded", "delivery": delivery})
        await asyncio.sleep(0.01)
    last = f"evt_load{sent:06d}"
    await page.wait_for_selector(
        f'#feed .feed-row[data-type="event.received"][data-event="{last}"]', timeout=5000)
    frames = await page.evaluate("window.__frames.filter(t => t > 0)")
    gaps = sorted(b - a for a, b in zip(frames, frames[1:], strict=False))
    median_gap, worst_gap = gaps[len(gaps) // 2], gaps[-1]
    print(f"\n{sent} events in 2 s: {len(frames)} frames drawn, median gap {median_gap:.1f} ms, "
          f"worst {worst_gap:.1f} ms")
    assert await page.locator("#feed .feed-row").count() == 200
    assert median_gap <= 34, f"the page drew too few frames (median gap {median_gap:.0f} ms)"
    assert console.errors == []

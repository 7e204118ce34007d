"""Render the notification payloads Relay sends for sample provider events as pictures
for docs/notifications.md (docs/img/notify-*.png).

The payloads are the exact ones the dispatcher posts (dispatch.notify.render), checked by
the same validators as the fake Slack, Discord and Teams receivers of the tests; each is
drawn as a simplified chat message in Chromium and screenshotted.

    .venv/bin/python scripts/notify_screenshots.py
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatch.notify import discord, slack, teams  # noqa: E402
from dispatch.notify.email import compose  # noqa: E402
from dispatch.notify.render import message_for  # noqa: E402
from dispatch.notify.templates import EventView  # noqa: E402
from tests.dispatch.platforms import (  # noqa: E402
    validate_discord,
    validate_slack,
    validate_teams,
)

CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "docs" / "img"
STYLE = """
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; }
.frame { width: 560px; padding: 14px 16px; }
.slack { background: #fff; color: #1d1c1d; }
.slack .fields { display: grid; grid-template-columns: 1fr 1fr; gap: 6px 18px; margin-top: 6px; }
.discord { background: #313338; color: #dbdee1; }
.embed { border-left: 4px solid #5865f2; background: #2b2d31; border-radius: 4px; padding: 8px 12px; }
.embed a { color: #00a8fc; font-weight: 600; text-decoration: none; }
.embed .fields { display: flex; flex-wrap: wrap; gap: 6px 18px; margin-top: 8px; }
.embed .fields div { min-width: 150px; }
.teams { background: #f5f5f5; color: #242424; }
.card { background: #fff; border-radius: 6px; padding: 12px 14px; box-shadow: 0 1px 2px #0003; }
.card .facts td { padding: 1px 12px 1px 0; vertical-align: top; }
.mail { background: #fff; color: #202124; }
.mail .subject { font-size: 17px; font-weight: 600; margin-bottom: 4px; }
.mail pre { font: 13px/1.4 ui-monospace, monospace; white-space: pre-wrap; }
.who { font-weight: 700; margin-bottom: 4px; }
pre.text { font: inherit; white-space: pre-wrap; margin: 4px 0; }
"""


def mrkdwn(text: str) -> str:
    """Slack mrkdwn (already escaped) → HTML: *bold* and <url|label> links."""
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r'<a href="\1">\2</a>', text)
    return re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", text).replace("\n", "<br>")


def slack_html(payload: dict) -> str:
    parts = ['<div class="frame slack"><div class="who">Relay <small>APP</small></div>']
    for block in payload["blocks"]:
        if "text" in block:
            parts.append(f"<div>{mrkdwn(block['text']['text'])}</div>")
        if "fields" in block:
            parts.append('<div class="fields">' + "".join(
                f"<div>{mrkdwn(f['text'])}</div>" for f in block["fields"]) + "</div>")
    return "".join(parts) + "</div>"


def discord_html(payload: dict) -> str:
    [embed] = payload["embeds"]
    title = html.escape(embed["title"])
    if embed.get("url"):
        title = f'<a href="{html.escape(embed["url"])}">{title}</a>'
    fields = "".join(f"<div><b>{html.escape(f['name'])}</b><br>{html.escape(f['value'])}</div>"
                     for f in embed.get("fields", []))
    return (f'<div class="frame discord"><div class="who">Relay <small>BOT</small></div>'
            f'<div class="embed">{title}<pre class="text">'
            f'{html.escape(embed.get("description", ""))}</pre>'
            f'<div class="fields">{fields}</div></div></div>')


def teams_html(payload: dict) -> str:
    card = payload["attachments"][0]["content"]
    parts = ['<div class="frame teams"><div class="card">']
    for element in card["body"]:
        if element["type"] == "TextBlock":
            weight = "b" if element.get("weight") == "Bolder" else "span"
            parts.append(f"<div><{weight}>{html.escape(element['text'])}</{weight}></div>")
        else:
            parts.append('<table class="facts">' + "".join(
                f"<tr><td><b>{html.escape(f['title'])}</b></td><td>{html.escape(f['value'])}</td></tr>"
                for f in element["facts"]) + "</table>")
    for action in card.get("actions", []):
        parts.append(f'<div><a href="{html.escape(action["url"])}">{action["title"]}</a></div>')
    return "".join(parts) + "</div></div>"


def event(name: str) -> EventView:
    sample = json.loads((ROOT / "hooks" / "fixtures" / f"{name}.json").read_text())
    return EventView(id="evt_01jexample", source=sample["provider"],
                     event_type=sample["event_type"],
                     received_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
                     headers=sample["headers"], body=json.dumps(sample["body"]).encode(),
                     content_type="application/json")


async def main() -> None:
    from playwright.async_api import async_playwright

    pages = {}
    push = message_for(None, event("github.push"))
    payload = slack.payload(push)
    validate_slack(payload)
    pages["notify-slack"] = slack_html(payload)
    pull = message_for(None, event("github.pull_request"))
    payload = discord.payload(pull)
    validate_discord(payload)
    pages["notify-discord"] = discord_html(payload)
    invoice = message_for(None, event("stripe.invoice.paid"))
    payload = teams.payload(invoice)
    validate_teams(payload)
    pages["notify-teams"] = teams_html(payload)
    mail = compose(message_for(None, event("shopify.orders.create")), ["ops@example.com"])
    pages["notify-email"] = (
        f'<div class="frame mail"><div class="subject">{html.escape(mail.subject)}</div>'
        f'<div>To: {html.escape(", ".join(mail.to))}</div>{mail.html.split("<body>")[1]}</div>')
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=["--headless=new", "--no-sandbox"])
        page = await browser.new_page(viewport={"width": 600, "height": 400})
        for name, body in pages.items():
            await page.set_content(f"<style>{STYLE}</style>{body}")
            await page.locator(".frame").screenshot(path=str(OUT / f"{name}.png"))
            print(OUT / f"{name}.png")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Each notification kind's payload keeps its platform's limits, whatever the event holds:
over-long texts are cut with `…`, never refused."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.notify import discord, slack, teams
from dispatch.notify.email import BadMailto, compose, recipients, to_email
from dispatch.notify.message import Message
from dispatch.notify.text import cut
from tests.dispatch.platforms import validate_discord, validate_slack, validate_teams

HUGE = Message(
    title="T" * 10_000,
    text="line <b>&</b> @channel\n" * 5_000,
    fields=[(f"name {n} " + "n" * 500, "v" * 5_000) for n in range(40)],
    url="https://example.com/x",
)


def test_cut_marks_what_it_removed():
    assert cut("abcdef", 6) == "abcdef"
    assert cut("abcdefg", 6) == "abcde…"
    assert len(cut("x" * 10_000, 3000)) == 3000


def test_slack_payload_within_limits():
    payload = slack.payload(HUGE)
    validate_slack(payload)
    assert len(payload["blocks"]) == 50
    assert payload["blocks"][0]["text"]["text"].endswith("…*>*") or \
        payload["blocks"][0]["text"]["text"].endswith("…")
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in payload["blocks"][1]["text"]["text"]


def test_discord_payload_within_limits():
    payload = discord.payload(HUGE)
    validate_discord(payload)
    [embed] = payload["embeds"]
    assert embed["title"].endswith("…") and len(embed["title"]) == 256
    assert payload["allowed_mentions"] == {"parse": []}


def test_teams_payload_within_limits():
    payload = teams.payload(HUGE)
    validate_teams(payload)
    assert payload["attachments"][0]["content"]["version"] == "1.4"


texts = st.text(min_size=0, max_size=8000)


@settings(max_examples=60, deadline=None)
@given(title=texts, text=texts,
       fields=st.lists(st.tuples(st.text(min_size=1, max_size=400),
                                 st.text(min_size=1, max_size=3000)), max_size=30))
def test_any_message_fits_every_platform(title, text, fields):
    message = Message(title=title or "t", text=text, fields=fields)
    validate_slack(slack.payload(message))
    validate_discord(discord.payload(message))
    validate_teams(teams.payload(message))


def test_discord_reads_retry_after_from_a_429_body():
    assert discord.retry_after(429, b'{"retry_after": 1.5, "global": false}') == 1.5
    assert discord.retry_after(429, b"not json") is None
    assert discord.retry_after(500, b'{"retry_after": 3}') is None


def test_mailto_recipients():
    assert recipients("mailto:a@x.example,b@x.example") == ["a@x.example", "b@x.example"]
    for bad in ("http://x", "mailto:", "mailto:not-an-address", "mailto:a@x.example,<b>"):
        with pytest.raises(BadMailto):
            recipients(bad)


def test_an_email_has_text_and_html_parts_and_a_one_line_subject():
    mail = compose(Message(title="Déjà vu\nsecond line", text="<script>x</script>",
                           fields=[("Total", "12 €")], url="https://example.com/o/1"),
                   ["a@x.example"])
    assert mail.subject == "Déjà vu second line"
    parsed = message_from_bytes(to_email(mail, "relay@x.example").as_bytes(),
                                policy=policy.default)
    assert parsed["Subject"] == "Déjà vu second line"
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "Total: 12 €" in text and "https://example.com/o/1" in text
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_a_url_that_would_break_slack_link_syntax_is_not_linked():
    payload = slack.payload(Message(title="t", url="https://x.example/a|b>c"))
    assert payload["blocks"][0]["text"]["text"] == "*t*"
    payload = slack.payload(Message(title="t", url="https://x.example/a"))
    assert payload["blocks"][0]["text"]["text"] == "*<https://x.example/a|t>*"

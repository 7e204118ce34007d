"""Email notifications: recipients from a `mailto:` URL, and the message with a text and
an HTML part."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote

from dispatch.notify.message import Message
from dispatch.notify.text import cut, one_line

SUBJECT = 200
MAX_RECIPIENTS = 50
_ADDRESS = re.compile(r"^[^@\s,<>\"]{1,64}@[A-Za-z0-9.-]{1,253}$")


class BadMailto(ValueError):
    pass


def recipients(url: str) -> list[str]:
    """The addresses of `mailto:a@x.example,b@x.example`, or BadMailto saying why not."""
    if not url.lower().startswith("mailto:"):
        raise BadMailto("an email endpoint's url must be mailto:address[,address...]")
    spec = url[len("mailto:"):].split("?", 1)[0]
    addresses = [unquote(part).strip() for part in spec.split(",") if part.strip()]
    if not addresses:
        raise BadMailto("mailto: names no recipient")
    if len(addresses) > MAX_RECIPIENTS:
        raise BadMailto(f"at most {MAX_RECIPIENTS} recipients")
    for address in addresses:
        if not _ADDRESS.match(address):
            raise BadMailto(f"{address!r} is not an email address")
    return addresses


@dataclass(frozen=True, slots=True)
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str


def compose(message: Message, to: list[str]) -> Mail:
    subject = cut(one_line(message.title), SUBJECT) or "Relay notification"
    lines = [message.title, ""]
    if message.text.strip():
        lines += [message.text.strip(), ""]
    lines += [f"{name}: {value}" for name, value in message.fields]
    if message.url:
        lines += ["", message.url]
    rows = "".join(
        f"<tr><th align=\"left\">{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in message.fields)
    title = html.escape(message.title)
    heading = (f"<a href=\"{html.escape(message.url, quote=True)}\">{title}</a>"
               if message.url else title)
    markup = (
        "<!DOCTYPE html><html><body>"
        f"<h2>{heading}</h2>"
        + (f"<pre style=\"white-space:pre-wrap\">{html.escape(message.text.strip())}</pre>"
           if message.text.strip() else "")
        + (f"<table>{rows}</table>" if rows else "")
        + "</body></html>"
    )
    return Mail(to=to, subject=subject, text="\n".join(lines).rstrip() + "\n", html=markup)


def to_email(mail: Mail, sender: str, message_id_domain: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(mail.to)
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain=message_id_domain)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message

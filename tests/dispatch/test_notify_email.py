"""Email endpoints through a real SMTP server on loopback (aiosmtpd): the mail as
received and parsed, the SMTP reply as the attempt's status, refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.dispatch.conftest import (
    make_endpoint,
    make_source,
    post_event,
    provider_sample,
    wait_for_statuses,
)
from tests.servers import free_port, wait_until


@dataclass
class Mailbox:
    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    """Recipient → the reply given to RCPT TO."""
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 Ok: queued as 4F2A1"


@pytest.fixture
def smtp_server(monkeypatch):
    from django.conf import settings

    mailbox = Mailbox()

    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret":
            mailbox.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=authenticate, auth_require_tls=False)
    controller.start()
    monkeypatch.setattr(settings, "RELAY_SMTP_URL", f"smtp://relay:s3cret@127.0.0.1:{port}")
    monkeypatch.setattr(settings, "RELAY_SMTP_FROM", "Relay <relay@x.example>")
    yield mailbox
    controller.stop()


async def test_an_email_endpoint_mails_every_recipient(client, admin, smtp_server,
                                                       start_dispatcher):
    from dispatch.models import Attempt

    await start_dispatcher()
    await make_source(client, admin, "billing")
    await make_endpoint(client, admin, "mailto:ops@x.example,boss@x.example", kind="email")
    sample = provider_sample("stripe.invoice.paid")
    event_id = await post_event(client, "billing", sample["body"])

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    [(sender, to, message)] = smtp_server.received
    assert sender == "relay@x.example"
    assert to == ["ops@x.example", "boss@x.example"]
    assert smtp_server.logins == ["relay"]
    assert message["Subject"].startswith("Stripe invoice.paid: ")
    assert message["To"] == "ops@x.example, boss@x.example"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Status: paid" in text
    assert "<th align=\"left\">Status</th><td>paid</td>" in html
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.status_code == 250
    assert attempt.response_body == "2.0.0 Ok: queued as 4F2A1"
    assert attempt.request_headers["to"] == "ops@x.example, boss@x.example"


async def test_non_ascii_subjects_and_bodies_survive(client, admin, smtp_server,
                                                     start_dispatcher):
    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:ops@x.example", kind="email", template={
        "title": "Commande {{ payload.n }} payée — {{ payload.who }}",
        "text": "Total : {{ payload.total }} €"})
    await post_event(client, "shop", {"n": 7, "who": "Zoë 日本", "total": "12,50"})

    await wait_until(lambda: len(smtp_server.received) == 1, message="the mail")
    [(_, _, message)] = smtp_server.received
    assert message["Subject"] == "Commande 7 payée — Zoë 日本"
    assert "Total : 12,50 €" in message.get_body(("plain",)).get_content()


async def test_a_refused_recipient_is_a_permanent_failure(client, admin, smtp_server,
                                                          start_dispatcher):
    from dispatch.models import Attempt

    await start_dispatcher()
    smtp_server.refuse["gone@x.example"] = \
        "550 5.1.1 <gone@x.example>: Recipient address rejected: User unknown"
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:ops@x.example,gone@x.example", kind="email",
                        retry_schedule=[0.05, 0.05, 0.05])
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    assert delivery.attempts_count == 1 and delivery.last_status_code == 550
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.response_body == (
        "gone@x.example: 5.1.1 <gone@x.example>: Recipient address rejected: User unknown")
    assert smtp_server.received == []


async def test_a_temporary_refusal_is_retried(client, admin, smtp_server, start_dispatcher):
    from dispatch.models import Attempt

    await start_dispatcher()
    smtp_server.refuse["busy@x.example"] = "451 4.7.1 Try again later"
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:busy@x.example", kind="email",
                        retry_schedule=[0.05, 0.05])
    event_id = await post_event(client, "shop")

    async def second_try() -> bool:
        return await Attempt.filter(status_code=451).count() >= 2

    await wait_until(second_try, message="the 451 retried")
    del smtp_server.refuse["busy@x.example"]
    await wait_for_statuses("succeeded", 1, event_id=event_id)
    assert len(smtp_server.received) == 1


async def test_the_ssrf_guard_applies_to_the_smtp_host(client, admin, smtp_server,
                                                       start_dispatcher, monkeypatch):
    from django.conf import settings

    from dispatch.models import Attempt

    monkeypatch.setattr(settings, "RELAY_SMTP_URL", "smtp://127.0.0.2:25")
    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:ops@x.example", kind="email", retry_schedule=[])
    event_id = await post_event(client, "shop")

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.error == "ssrf_blocked"
    assert "127.0.0.2" in attempt.error_detail


async def test_email_endpoint_urls_are_checked(client, admin):
    for kind, url, problem in (
        ("email", "http://127.0.0.1:9/x", "mailto:"),
        ("slack", "mailto:a@x.example", "needs kind email"),
        ("email", "mailto:nobody", "is not an email address"),
    ):
        answer = await client.post("/api/v1/endpoints", headers=admin,
                                   json={"url": url, "kind": kind})
        assert answer.status_code == 422 and problem in answer.json()["detail"], answer.text

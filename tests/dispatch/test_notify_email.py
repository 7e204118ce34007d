"""Email endpoints through a real SMTP server on loopback (aiosmtpd): the mail as
received and parsed, the SMTP reply as the attempt's status, refusals."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    tls_sessions: list[bool] = field(default_factory=list)
    """For each mail received, whether its SMTP session ran over TLS."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        self.tls_sessions.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 2.0.0 Ok: queued as 4F2A1"


def _authenticator(mailbox: Mailbox):
    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret":
            mailbox.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return authenticate


@pytest.fixture
def smtp_server(monkeypatch):
    from django.conf import settings

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=_authenticator(mailbox), auth_require_tls=False)
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


# --- TLS: STARTTLS and smtps:// against a certificate made for the test ------------------------


@dataclass
class ServerCertificate:
    ca_file: Path
    """The PEM of the CA that signed the server certificate (what Relay must trust)."""
    server_context: ssl.SSLContext


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> ServerCertificate:
    """A private CA and a server certificate it signed for `localhost` and 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Relay test CA"))
          .issuer_name(_name("Relay test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("smtp-tls")
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file = folder / "server.pem"
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain_file)
    return ServerCertificate(ca_file=ca_file, server_context=context)


@pytest.fixture
def tls_smtp(monkeypatch, certificate):
    """Starts an aiosmtpd server speaking STARTTLS (`"starttls"`) or TLS from the first byte
    (`"smtps"`), points RELAY_SMTP_URL at it and returns its mailbox."""
    from django.conf import settings

    controllers: list[Controller] = []

    def start(mode: str) -> Mailbox:
        mailbox = Mailbox()
        port = free_port()
        if mode == "starttls":
            # No MAIL, RCPT or AUTH before STARTTLS, and AUTH only over TLS.
            controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                                    authenticator=_authenticator(mailbox),
                                    tls_context=certificate.server_context,
                                    require_starttls=True, auth_require_tls=True)
            url = f"smtp://relay:s3cret@127.0.0.1:{port}?starttls=true"
        else:
            # aiosmtpd counts only STARTTLS as TLS for AUTH (and for session.ssl), so its
            # auth_require_tls would hide AUTH here; the mailbox looks at the transport.
            controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                                    authenticator=_authenticator(mailbox),
                                    ssl_context=certificate.server_context,
                                    auth_require_tls=False)
            url = f"smtps://relay:s3cret@127.0.0.1:{port}"
        controller.start()
        controllers.append(controller)
        monkeypatch.setattr(settings, "RELAY_SMTP_URL", url)
        monkeypatch.setattr(settings, "RELAY_SMTP_FROM", "relay@x.example")
        return mailbox

    yield start
    for controller in controllers:
        controller.stop()


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
async def test_mail_goes_over_tls_to_a_server_with_a_private_ca(
        client, admin, tls_smtp, certificate, start_dispatcher, monkeypatch, mode):
    from dispatch.models import Attempt

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.ca_file))
    mailbox = tls_smtp(mode)
    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:ops@x.example", kind="email", retry_schedule=[])
    event_id = await post_event(client, "shop", {"n": 1})

    [delivery] = await wait_for_statuses("succeeded", 1, event_id=event_id)
    [attempt] = await Attempt.filter(delivery_id=delivery.id)
    assert attempt.status_code == 250 and attempt.error is None, attempt.error_detail
    assert [to for _, to, _ in mailbox.received] == [["ops@x.example"]]
    assert mailbox.tls_sessions == [True]
    assert mailbox.logins == ["relay"]


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
async def test_an_untrusted_certificate_fails_the_attempt_with_kind_tls(
        client, admin, tls_smtp, start_dispatcher, monkeypatch, mode):
    from dispatch.models import Attempt

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    mailbox = tls_smtp(mode)
    await start_dispatcher()
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, "mailto:ops@x.example", kind="email",
                        retry_schedule=[0.05])
    event_id = await post_event(client, "shop", {"n": 1})

    [delivery] = await wait_for_statuses("failed", 1, event_id=event_id)
    attempts = await Attempt.filter(delivery_id=delivery.id).order_by("started_at")
    assert len(attempts) == 2, "the TLS failure is retried"
    for attempt in attempts:
        assert attempt.error == "tls", (attempt.error, attempt.error_detail)
        assert attempt.status_code is None
        assert "certificate verify failed" in attempt.error_detail
    assert mailbox.received == [] and mailbox.logins == []

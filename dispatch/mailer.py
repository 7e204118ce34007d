"""Sending one email notification through the configured SMTP server (`aiosmtplib`).

The SMTP host is resolved and checked against the SSRF policy like any target, and the
connection goes to the address that was checked. The outcome is an attempt like an HTTP
one: the SMTP reply code is the status code, its text the response body. A recipient the
server refuses for good (5xx) makes the attempt permanent (no retries); 4xx is retried.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import UTC, datetime

import aiosmtplib

from dispatch.address_policy import describe_refusal, is_allowed_address
from dispatch.attempt_result import AttemptResult
from dispatch.notify.email import Mail, to_email
from dispatch.notify.smtp import SmtpServer
from dispatch.ssrf import Allowlist, ErrorKind, TargetBlocked, _chain, networks_of


async def _connect(server: SmtpServer, allowlist: Allowlist, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {server.host}: {exc}") from None
    networks = networks_of(allowlist)
    allowed = [info for info in infos if is_allowed_address(info[4][0], networks)]
    if not allowed:
        refused = "; ".join(dict.fromkeys(describe_refusal(info[4][0]) for info in infos))
        raise TargetBlocked(f"the SMTP host {server.host} resolves only to refused "
                            f"addresses: {refused}")
    last: OSError | None = None
    for family, type_, proto, _, address in allowed:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, address)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else OSError(f"connect timed out: {exc}")
    assert last is not None
    raise last


def _failure_kind(exc: BaseException) -> ErrorKind:
    """`tls` when the TLS handshake failed (an untrusted certificate, a name mismatch),
    whether aiosmtplib raises the `ssl` error itself or wraps it."""
    if any(isinstance(item, ssl.SSLError | ssl.CertificateError) for item in _chain(exc)):
        return "tls"
    return "connect"


def _record(result: AttemptResult, code: int, text: str) -> None:
    result.status_code = code
    result.response_body = text[:8192]


async def send_mail(mail: Mail, server: SmtpServer | None, sender: str, *,
                    allowlist: Allowlist, timeout: float) -> AttemptResult:
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    result = AttemptResult(started_at=started_at, duration_ms=0.0, request_headers={
        "from": sender, "to": ", ".join(mail.to), "subject": mail.subject})
    try:
        if server is None:
            result.error, result.permanent = "config", True
            result.error_detail = "RELAY_SMTP_URL is not set: email endpoints cannot send"
            return result
        async with asyncio.timeout(timeout):
            await _send(mail, server, sender, allowlist, timeout, result)
    except TimeoutError:
        result.error = "timeout"
        result.error_detail = f"the SMTP exchange did not finish within {timeout:g} s"
    except TargetBlocked as exc:
        result.error, result.error_detail = "ssrf_blocked", str(exc)
    except aiosmtplib.SMTPResponseException as exc:
        _record(result, exc.code, exc.message)
        result.permanent = 500 <= exc.code < 600
    except (aiosmtplib.SMTPException, OSError) as exc:
        result.error, result.error_detail = _failure_kind(exc), f"{type(exc).__name__}: {exc}"
    finally:
        result.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
    return result


async def _send(mail: Mail, server: SmtpServer, sender: str, allowlist: Allowlist,
                timeout: float, result: AttemptResult) -> None:
    sock = await _connect(server, allowlist, timeout)
    smtp = aiosmtplib.SMTP(hostname=server.host, sock=sock, use_tls=server.use_tls,
                           start_tls=server.start_tls, timeout=timeout)
    try:
        await smtp.connect()
        if server.username:
            await smtp.login(server.username, server.password or "")
        await smtp.mail(sender)
        for recipient in mail.to:
            try:
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                # Nobody gets it: a retry would otherwise send it twice to the others.
                _record(result, exc.code, f"{recipient}: {exc.message}")
                result.permanent = 500 <= exc.code < 600
                await smtp.rset()
                return
        answer = await smtp.data(to_email(mail, sender).as_bytes())
        _record(result, answer.code, answer.message)
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()

"""RELAY_SMTP_URL parsing."""

from __future__ import annotations

import pytest

from dispatch.notify.smtp import BadSmtpUrl, parse_smtp_url


def test_smtp_with_starttls_and_credentials():
    server = parse_smtp_url("smtp://user%40x:p%3Ass@mail.example.com:587?starttls=true")
    assert (server.host, server.port, server.username, server.password) == \
        ("mail.example.com", 587, "user@x", "p:ss")
    assert server.start_tls is True and server.use_tls is False
    assert "p:ss" not in repr(server)


def test_defaults():
    assert parse_smtp_url("smtp://mail.example.com").port == 25
    assert parse_smtp_url("smtp://mail.example.com").start_tls is None
    tls = parse_smtp_url("smtps://mail.example.com")
    assert (tls.port, tls.use_tls, tls.start_tls) == (465, True, False)
    assert parse_smtp_url("smtp://h?starttls=false").start_tls is False


@pytest.mark.parametrize("url, problem", [
    ("http://mail.example.com", "smtp:// or smtps://"),
    ("smtp://", "no host"),
    ("smtp://h?starttls=maybe", "true or false"),
    ("smtp://h:99999", "RELAY_SMTP_URL"),
])
def test_bad_urls_say_why(url, problem):
    with pytest.raises(BadSmtpUrl, match=problem):
        parse_smtp_url(url)

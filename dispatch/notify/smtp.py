"""`RELAY_SMTP_URL` parsed: `smtp://user:pass@host:587?starttls=true` or
`smtps://user:pass@host:465` (TLS from the first byte)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


class BadSmtpUrl(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    """TLS from the first byte (smtps://)."""
    start_tls: bool | None
    """True: STARTTLS required; False: never; None: when the server offers it."""

    def __repr__(self) -> str:
        return f"SmtpServer({self.host}:{self.port}, tls={self.use_tls}, starttls={self.start_tls})"


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise BadSmtpUrl("RELAY_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise BadSmtpUrl("RELAY_SMTP_URL has no host")
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError as exc:
        raise BadSmtpUrl(f"RELAY_SMTP_URL: {exc}") from None
    query = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query).items()}
    start_tls: bool | None = None
    if "starttls" in query:
        if query["starttls"] not in ("true", "false"):
            raise BadSmtpUrl("RELAY_SMTP_URL: starttls must be true or false")
        start_tls = query["starttls"] == "true"
    if scheme == "smtps":
        start_tls = False
    return SmtpServer(
        host=parts.hostname, port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=scheme == "smtps", start_tls=start_tls,
    )

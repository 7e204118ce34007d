"""Who opened a live WebSocket: an API token (`Authorization: Bearer` or `?token=`), or the
dashboard's session cookie.

The cookie is only honoured when the browser says the page came from this same host
(`Origin`), so another web site cannot open the stream with an admin's cookie.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.utils.http import is_same_domain

from relay.api import read_session, session_token
from relay.crypto import hash_token
from relay.models import ApiToken


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def query_token(scope: dict[str, Any]) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


def session_cookie(scope: dict[str, Any]) -> str | None:
    header = _header(scope, b"cookie")
    if not header:
        return None
    cookies = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return None
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None else None


def same_origin(scope: dict[str, Any]) -> bool:
    """True when the browser's Origin names this host (or no Origin was sent: not a browser).

    "This host" is the Host header (X-Forwarded-Host too when RELAY_USE_X_FORWARDED_HOST
    is on), or a name listed in RELAY_ALLOWED_HOSTS (not the development wildcard).
    """
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    netloc, hostname = parts.netloc.lower(), (parts.hostname or "").lower()
    hosts = [_header(scope, b"host")]
    if settings.USE_X_FORWARDED_HOST:
        hosts.append(_header(scope, b"x-forwarded-host"))
    if any(host and host.split(",")[0].strip().lower() == netloc for host in hosts):
        return True
    patterns = [pattern for pattern in settings.ALLOWED_HOSTS if pattern != "*"]
    return bool(hostname) and any(is_same_domain(hostname, pattern) for pattern in patterns)


def bearer_token(scope: dict[str, Any]) -> str | None:
    """`Authorization: Bearer <token>` sent with the handshake (clients that are not
    browsers can, and keep the token out of URLs and access logs)."""
    header = _header(scope, b"authorization")
    if header is None or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


async def authenticate(scope: dict[str, Any]) -> ApiToken | None:
    token = bearer_token(scope) or query_token(scope)
    if token is not None:
        return await ApiToken.get_or_none(token_hash=hash_token(token), revoked_at=None)
    cookie = session_cookie(scope)
    if cookie is None or not same_origin(scope):
        return None
    return await session_token(read_session(cookie))

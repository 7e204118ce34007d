"""The dashboard's pages: token login and logout, the live page, the sources page.

The pages are shells; their scripts read everything through the admin API (with the
session cookie and the page's `X-Relay-CSRF` value) and the live WebSocket. No sync
middleware runs for them: the session is a signed cookie read and written here.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect

from kernel.api import (
    CSRF_HEADER,
    SESSION_CSRF,
    SESSION_ID,
    SESSION_SCOPE,
    SESSION_TOKEN_ID,
    read_session,
    session_token,
)
from kernel.models import ApiToken, DashboardSession
from kernel.tokens import find_token

DASHBOARD_URL = "/dashboard/"
LOGIN_URL = "/dashboard/login"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)


def _page(request: HttpRequest, template: str, context: dict[str, Any],
          status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    return response


async def _session(request: HttpRequest) -> tuple[ApiToken, dict[str, Any]] | None:
    session = read_session(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    token = await session_token(session)
    if token is None or not isinstance(session.get(SESSION_CSRF), str):
        return None
    return token, session


async def _set_session(response: HttpResponse, token: ApiToken) -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    session_id = secrets.token_urlsafe(32)
    expired = datetime.now(UTC) - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    await DashboardSession.filter(created_at__lt=expired).delete()
    await DashboardSession.create(id=session_id, token_id=token.id)
    store = SessionStore()
    store[SESSION_ID] = session_id
    store[SESSION_TOKEN_ID] = token.id
    store[SESSION_SCOPE] = token.scope
    store[SESSION_CSRF] = secrets.token_urlsafe(32)
    store.save()
    response.set_cookie(
        settings.SESSION_COOKIE_NAME, store.session_key, max_age=settings.SESSION_COOKIE_AGE,
        path="/", secure=settings.SESSION_COOKIE_SECURE, httponly=True,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


async def home(request: HttpRequest) -> HttpResponse:
    """`/`: a newcomer who opens the server's address lands on the dashboard."""
    return redirect(DASHBOARD_URL)


@csrf_protect
async def login(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        given = request.POST.get("token", "").strip()
        token = None
        if given:
            token = await find_token(given)
        if token is None:
            return _page(request, "live/login.html", {
                "error": "That token is not valid (or it was revoked). Paste a token printed by "
                         "runrelay or createtoken.",
            }, status=401)
        response = redirect(DASHBOARD_URL)
        await _set_session(response, token)
        return response
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    if await _session(request) is not None:
        return redirect(DASHBOARD_URL)
    return _page(request, "live/login.html", {})


@csrf_protect
async def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    session_id = read_session(request.COOKIES.get(settings.SESSION_COOKIE_NAME)).get(SESSION_ID)
    if isinstance(session_id, str) and session_id:
        await DashboardSession.filter(id=session_id, ended_at=None).update(
            ended_at=datetime.now(UTC))
    response = redirect(LOGIN_URL)
    response.delete_cookie(settings.SESSION_COOKIE_NAME, path="/",
                           samesite=settings.SESSION_COOKIE_SAMESITE)
    return response


async def _shell(request: HttpRequest, template: str, page: str) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    found = await _session(request)
    if found is None:
        return redirect(LOGIN_URL)
    token, session = found
    return _page(request, template, {
        "page": page,
        "token_name": token.name,
        "scope": token.scope,
        "can_write": token.scope == "admin",
        "csrf_value": session[SESSION_CSRF],
        "csrf_header": CSRF_HEADER,
    })


@csrf_protect
async def dashboard(request: HttpRequest) -> HttpResponse:
    return await _shell(request, "live/dashboard.html", "live")


@csrf_protect
async def sources(request: HttpRequest) -> HttpResponse:
    return await _shell(request, "live/sources.html", "sources")


@csrf_protect
async def events(request: HttpRequest) -> HttpResponse:
    """The event log; its filters live in the query string, so a search is a link."""
    return await _shell(request, "live/events.html", "events")


@csrf_protect
async def endpoint(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """One endpoint: its settings, health and delivery log."""
    response = await _shell(request, "live/endpoint.html", "endpoint")
    return response


async def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other address under /dashboard/: a page in the dashboard's style, status 404."""
    found = await _session(request)
    token = found[0] if found else None
    return _page(request, "live/404.html", {
        "page": "404", "path": request.path, "token_name": token.name if token else "",
        "scope": token.scope if token else "", "can_write": False,
    }, status=404)


@csrf_protect
async def notify(request: HttpRequest) -> HttpResponse:
    return await _shell(request, "live/notify.html", "notify")

"""Log-out ends the session on the server: a copy of the cookie taken before log-out no
longer opens the dashboard, the API or the live stream; other log-ins stay."""

from __future__ import annotations

import re

import httpx
from django.conf import settings

from tests.live.test_dashboard_http import logged_in


async def _log_out(http: httpx.AsyncClient) -> None:
    page = await http.get("/dashboard/")
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    out = await http.post("/dashboard/logout", data={"csrfmiddlewaretoken": form_token})
    assert out.status_code == 302


async def test_a_copied_cookie_stops_working_at_log_out(relay_server, admin_token):
    from live.auth import authenticate

    name = settings.SESSION_COOKIE_NAME
    async with logged_in(relay_server, admin_token) as (http, _), \
            logged_in(relay_server, admin_token) as (other, _):
        cookie = http.cookies[name]
        scope = {"headers": [(b"cookie", f"{name}={cookie}".encode())]}
        assert await authenticate(scope) is not None
        await _log_out(http)
        assert (await other.get("/api/v1/sources")).status_code == 200

    async with httpx.AsyncClient(base_url=relay_server, cookies={name: cookie}) as copy:
        assert (await copy.get("/api/v1/sources")).status_code == 401
        assert (await copy.get("/dashboard/")).status_code == 302
    assert await authenticate(scope) is None

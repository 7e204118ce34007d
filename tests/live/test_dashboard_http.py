"""The dashboard over real HTTP: token login, the signed-cookie session on the admin API
(with its CSRF header), logout, and the static files the pages load."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import httpx
import pytest

from kernel.api import CSRF_HEADER


@asynccontextmanager
async def logged_in(base: str, token: str):
    """A client logged in to the dashboard, and the page's CSRF value for API writes."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield http, await login(http, token)


async def login(http: httpx.AsyncClient, token: str) -> str:
    page = await http.get("/dashboard/login")
    assert page.status_code == 200
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = await http.post("/dashboard/login", data={"token": token,
                                                       "csrfmiddlewaretoken": form_token})
    assert answer.status_code == 302 and answer.headers["location"] == "/dashboard/"
    dashboard = await http.get("/dashboard/")
    assert dashboard.status_code == 200
    return re.search(r'data-csrf="([^"]+)"', dashboard.text).group(1)


async def test_pages_need_a_login(client):
    for path in ("/dashboard/", "/dashboard/sources"):
        answer = await client.get(path)
        assert answer.status_code == 302 and answer.headers["location"] == "/dashboard/login"
    assert (await client.get("/")).headers["location"] == "/dashboard/"


async def test_a_wrong_token_is_refused_and_a_forged_form_too(client, relay_server, admin_token):
    page = await client.get("/dashboard/login")
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    wrong = await client.post("/dashboard/login", data={"token": "rly_wrong",
                                                        "csrfmiddlewaretoken": form_token})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "sessionid" not in wrong.cookies
    async with httpx.AsyncClient(base_url=relay_server) as stranger:
        forged = await stranger.post("/dashboard/login", data={"token": admin_token})
    assert forged.status_code == 403, "a login form posted from elsewhere has no CSRF token"


async def test_the_session_reads_and_writes_the_api_with_the_csrf_header(relay_server, client,
                                                                         admin_token):
    async with logged_in(relay_server, admin_token) as (http, csrf):
        assert (await http.get("/api/v1/sources")).status_code == 200
        without = await http.post("/api/v1/sources", json={"slug": "shop"})
        assert without.status_code == 403 and CSRF_HEADER in without.json()["detail"]
        wrong = await http.post("/api/v1/sources", json={"slug": "shop"},
                                headers={CSRF_HEADER: "not-it"})
        assert wrong.status_code == 403
        created = await http.post("/api/v1/sources", json={"slug": "shop"},
                                  headers={CSRF_HEADER: csrf})
        assert created.status_code == 201, created.text

        logout_page = await http.get("/dashboard/")
        form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', logout_page.text)
        out = await http.post("/dashboard/logout", data={"csrfmiddlewaretoken": form_token.group(1)})
        assert out.status_code == 302 and out.headers["location"] == "/dashboard/login"
        assert (await http.get("/api/v1/sources")).status_code == 401
        assert (await http.get("/dashboard/")).status_code == 302


async def test_a_viewer_session_reads_but_cannot_write(relay_server, client, viewer_token):
    async with logged_in(relay_server, viewer_token) as (http, csrf):
        page = await http.get("/dashboard/")
        assert 'data-can-write="false"' in page.text
        assert 'id="new-endpoint"' not in page.text and 'id="inspector-replay"' not in page.text
        assert (await http.get("/api/v1/events")).status_code == 200
        refused = await http.post("/api/v1/sources", json={"slug": "shop"},
                                  headers={CSRF_HEADER: csrf})
        assert refused.status_code == 403


async def test_bearer_tokens_work_as_before_and_win_over_a_session(relay_server, client, admin,
                                                                    admin_token, viewer):
    assert (await client.post("/api/v1/sources", headers=admin, json={"slug": "a"})).status_code == 201
    assert (await client.post("/api/v1/sources", headers=viewer, json={"slug": "b"})).status_code == 403
    async with logged_in(relay_server, admin_token) as (http, csrf):
        bad_bearer = await http.get("/api/v1/sources", headers={"Authorization": "Bearer rly_bad"})
        assert bad_bearer.status_code == 401, "a bad bearer token is not rescued by the cookie"


async def test_a_revoked_token_ends_its_sessions(relay_server, client, admin_token):
    from kernel.crypto import hash_token
    from kernel.models import ApiToken
    from kernel.tokens import revoke_tokens

    async with logged_in(relay_server, admin_token) as (http, _):
        row = await ApiToken.get(token_hash=hash_token(admin_token))
        await revoke_tokens(row.id)
        assert (await http.get("/api/v1/sources")).status_code == 401
        assert (await http.get("/dashboard/")).status_code == 302


@pytest.mark.parametrize("path", ["live/dashboard.js", "live/common.js", "live/sources.js",
                                  "live/dashboard.css", "live/favicon.svg"])
async def test_static_files_are_served(client, path):
    answer = await client.get(f"/static/{path}")
    assert answer.status_code == 200 and answer.content


async def test_pages_carry_a_strict_content_security_policy(relay_server, client, admin_token):
    async with logged_in(relay_server, admin_token) as (http, _):
        page = await http.get("/dashboard/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text, "no inline scripts: the policy forbids them"

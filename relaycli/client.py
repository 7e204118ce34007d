"""Calls to Relay's admin API, with errors turned into messages that say what to do."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from relaycli.config import Credentials
from relaycli.errors import CliError

TIMEOUT = 15.0
JsonObject = dict[str, Any]


def user_agent() -> str:
    from relaycli import __version__

    return f"relay-cli/{__version__}"


def explain(response: httpx.Response) -> str:
    """The server's `detail`, or the status line when there is none."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}"


def unreachable(url: str, exc: Exception) -> CliError:
    return CliError(f"cannot reach Relay at {url} ({type(exc).__name__}: {exc}); is it "
                    "running? (start it with make run, or fix the URL with relay login)")


class Api:
    def __init__(self, credentials: Credentials) -> None:
        self.url = credentials.url
        self.http = httpx.Client(
            base_url=credentials.url, timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {credentials.token}",
                     "User-Agent": user_agent()})

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        try:
            response = self.http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code in ok:
            return response.json() if response.content else None
        if response.status_code == 401:
            raise CliError(f"the token was refused ({explain(response)}): run relay login")
        if response.status_code == 403:
            raise CliError(f"not allowed: {explain(response)} (use an admin token: relay login)")
        if response.status_code == 404 and not response.headers.get(
                "content-type", "").startswith("application/json"):
            raise CliError(f"{self.url} does not look like Relay (no {path}); check the URL")
        raise CliError(explain(response))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        return self.request("POST", path, json=json, ok=ok)

    def pages(self, path: str, params: Mapping[str, Any], limit: int) -> Iterator[JsonObject]:
        """Up to `limit` items of a cursor-paginated list, newest first."""
        cursor: str | None = None
        left = limit
        while left > 0:
            query = {**{k: v for k, v in params.items() if v is not None},
                     "limit": min(left, 250)}
            if cursor:
                query["cursor"] = cursor
            page = self.get(path, query)
            yield from page["data"]
            left -= len(page["data"])
            cursor = page.get("next_cursor")
            if not cursor or not page["data"]:
                return

    def source_by_slug(self, slug: str) -> JsonObject:
        for source in self.pages("/api/v1/sources", {}, 100_000):
            if source["slug"] == slug:
                return source
        raise CliError(f"no source with slug {slug!r} (list them in the dashboard, or "
                       "GET /api/v1/sources)")

"""Helpers for the hooks tests: sources created through the admin API, event counts."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_source(client, admin):
    """`await make_source("slug", kind="github", secret="...", **more_fields)` -> the answer."""

    async def make(slug: str, kind: str = "none", secret: str | None = None,
                   verification: dict | None = None, **fields) -> dict:
        settings = {"kind": kind, **(verification or {})}
        if secret is not None:
            settings["secret"] = secret
        answer = await client.post("/api/v1/sources", headers=admin,
                                   json={"slug": slug, "verification": settings, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    return make


@pytest.fixture
def event_count():
    """`await event_count()` -> rows in the event table (straight from the database)."""
    from hooks.models import Event

    async def count(**filters) -> int:
        return await Event.filter(**filters).count()

    return count


class RawQueries:
    """Tortoise's `execute_query` over a raw asyncpg connection (for code that reads the
    catalog through whichever connection it is given)."""

    def __init__(self, connection) -> None:
        self.connection = connection

    async def execute_query(self, sql: str, values: list) -> tuple[int, list]:
        rows = await self.connection.fetch(sql, *values)
        return len(rows), rows

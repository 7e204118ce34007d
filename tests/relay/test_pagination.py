"""Cursor pagination of list answers: newest first, `next_cursor` until the last page,
`limit` 1..250, a malformed cursor is 400."""

from __future__ import annotations

import base64

import pytest

LISTS = ["/api/v1/sources", "/api/v1/events"]


async def _fill(client, admin, count: int) -> tuple[list[str], list[str]]:
    sources, events = [], []
    for n in range(count):
        created = await client.post("/api/v1/sources", headers=admin, json={"slug": f"s{n}"})
        sources.append(created.json()["id"])
        published = await client.post("/api/v1/events", headers=admin,
                                      json={"event_type": "t", "payload": n})
        events.append(published.json()["id"])
    return sources, events


async def _walk(client, headers, path: str, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(path, headers=headers, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"data", "next_cursor"}
        pages.append([item["id"] for item in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


async def test_pages_are_newest_first_and_end_with_null(client, admin):
    sources, events = await _fill(client, admin, 7)
    for path, ids in (("/api/v1/sources", sources), ("/api/v1/events", events)):
        pages = await _walk(client, admin, path, 3)
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [item for page in pages for item in page] == list(reversed(ids))
        assert await _walk(client, admin, path, 7) == [list(reversed(ids))]
        assert await _walk(client, admin, path, 250) == [list(reversed(ids))]


async def test_default_limit_is_50(client, admin):
    for n in range(52):
        await client.post("/api/v1/events", headers=admin, json={"event_type": "t", "payload": n})
    body = (await client.get("/api/v1/events", headers=admin)).json()
    assert len(body["data"]) == 50
    assert body["next_cursor"] is not None
    rest = (await client.get("/api/v1/events", headers=admin,
                             params={"cursor": body["next_cursor"]})).json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None


async def test_empty_list(client, admin):
    for path in LISTS:
        assert (await client.get(path, headers=admin)).json() == {"data": [], "next_cursor": None}


async def test_rejected_list_paginates(client, admin):
    source = (await client.post("/api/v1/sources", headers=admin, json={
        "slug": "r", "verification": {"kind": "token", "secret": "t"}})).json()
    for _ in range(5):
        await client.post("/in/r", content=b"{}")
    pages = await _walk(client, admin, f"/api/v1/sources/{source['id']}/rejected", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    flat = [item for page in pages for item in page]
    assert flat == sorted(flat, reverse=True)


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "-1", "251", "100000", "ten"])
async def test_limit_out_of_bounds_is_422(client, admin, path, limit):
    answer = await client.get(path, headers=admin, params={"limit": limit})
    assert answer.status_code == 422, answer.text
    assert "limit" in answer.json()["detail"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", [
    "garbage", "!!!", base64.urlsafe_b64encode(b"c1:not-an-id").decode(),
    base64.urlsafe_b64encode(b"evt_0000000000aaaaaaaaaaaaaaaa").decode(), "\u00e9t\u00e9",
])
async def test_malformed_cursor_is_400(client, admin, path, cursor):
    answer = await client.get(path, headers=admin, params={"cursor": cursor})
    assert answer.status_code == 400, answer.text
    assert "cursor" in answer.json()["detail"]

"""Header values that are not ASCII: received UTF-8 reaches the subscriber byte for byte,
bytes no HTTP client here can write are left out with a note on the attempt, and neither
fails the delivery; an endpoint's own headers must be printable ASCII (422)."""

from __future__ import annotations

import pytest

from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses
from tests.dispatch.raw_answers import RawServer, http_answer
from tests.servers import wait_until

SHOP_NAME = "Café Zürich".encode()


async def test_non_ascii_header_values_are_forwarded_byte_exact(client, admin, dispatcher):
    from dispatch.models import Attempt

    server = RawServer(http_answer("204 No Content", [], b""))
    async with server as base:
        await make_source(client, admin, "shop")
        await make_endpoint(client, admin, base + "/hook")
        event_id = await post_event(client, "shop",
                                    headers={"x-shop-name": SHOP_NAME, "x-raw": b"\xff\x80ok"})
        await wait_until(lambda: len(server.requests) == 1, message="the delivery")
        await wait_for_statuses("succeeded", 1, event_id=event_id)
    head = server.requests[0].split(b"\r\n\r\n")[0]
    assert b"\r\nx-shop-name: " + SHOP_NAME + b"\r\n" in head
    assert b"x-raw" not in head
    [attempt] = await Attempt.all()
    assert (attempt.status_code, attempt.error) == (204, None)
    assert "'x-raw'" in attempt.error_detail
    assert attempt.request_headers["x-shop-name"] == "Café Zürich"


@pytest.mark.parametrize("value", ["Café", "a\tb\x01", "line\x7f", "€"])
async def test_endpoint_headers_must_be_printable_ascii(client, admin, value):
    answer = await client.post("/api/v1/endpoints", headers=admin, json={
        "url": "http://127.0.0.1:9/hook", "headers": {"X-Shop": value}})
    assert answer.status_code == 422, answer.text
    assert "X-Shop" in answer.json()["detail"]
    assert "printable ASCII" in answer.json()["detail"]


async def test_endpoint_header_values_with_spaces_and_tabs_are_fine(client, admin):
    answer = await client.post("/api/v1/endpoints", headers=admin, json={
        "url": "http://127.0.0.1:9/hook", "headers": {"X-Shop": "Cafe Zurich\t(1) ~!"}})
    assert answer.status_code == 201, answer.text

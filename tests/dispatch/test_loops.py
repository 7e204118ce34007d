"""Relay does not feed itself: an endpoint URL on its own ingest is refused, and a loop that
goes through a name Relay does not know as its own stops after 5 hops (508)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatch.own_ingest import is_own_ingest
from tests.dispatch.conftest import make_endpoint, make_source, post_event
from tests.servers import wait_until


@pytest.mark.parametrize(("url", "own"), [
    ("http://127.0.0.1:8000/in/shop", True),
    ("http://LOCALHOST:8000/in/shop?x=1", True),
    ("http://[::1]:8000/in/x", True),
    ("http://127.0.0.1:8000/hook", False),
    ("http://127.0.0.1:8001/in/shop", False),
    ("https://relay.example.test/in/a", True),
    ("https://relay.example.test:443/in/a", True),
    ("http://relay.example.test/in/a", False),
    ("https://other.example.test/in/a", False),
    ("https://relay.example.test/relay/in/a", False),
])
def test_own_ingest_urls(url, own):
    assert is_own_ingest(url, ["http://0.0.0.0:8000", "https://relay.example.test"]) is own


def test_a_public_url_with_a_path_prefix():
    assert is_own_ingest("https://x.example.test/relay/in/a", ["https://x.example.test/relay/"])
    assert not is_own_ingest("https://x.example.test/in/a", ["https://x.example.test/relay"])


async def test_an_endpoint_on_relays_own_ingest_is_refused(client, admin, relay_server):
    port = relay_server.rsplit(":", 1)[1]
    for url in (f"{relay_server}/in/shop", f"http://localhost:{port}/in/other"):
        answer = await client.post("/api/v1/endpoints", headers=admin, json={"url": url})
        assert answer.status_code == 422, answer.text
        assert "own ingest" in answer.json()["detail"]
    endpoint = await make_endpoint(client, admin, f"{relay_server}/not-ingest")
    answer = await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin,
                                json={"url": f"{relay_server}/in/shop"})
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(("hops", "status"), [("5", 202), ("6", 508), ("99999999999", 508),
                                              ("junk", 202)])
async def test_ingest_refuses_requests_past_five_hops(client, admin, hops, status):
    await make_source(client, admin, "shop")
    answer = await client.post("/in/shop", content=b"{}", headers={"x-relay-hops": hops})
    assert answer.status_code == status, answer.text
    if status == 508:
        assert "x-relay-hops" in answer.json()["detail"]


async def test_a_loop_through_an_unknown_name_stops_after_five_hops(client, admin, sink,
                                                                    relay_server, dispatcher):
    from dispatch.models import Attempt, Endpoint
    from hooks.models import Event

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/x"), retry_schedule=[])
    # As if the URL were a DNS alias of this Relay that the API could not recognise.
    await Endpoint.filter(id=endpoint["id"]).update(url=f"{relay_server}/in/shop",
                                                    updated_at=datetime.now(UTC))
    await post_event(client, "shop")

    async def refused() -> bool:
        return await Attempt.filter(status_code=508).exists()

    await wait_until(refused, timeout=20, message="the sixth hop to be refused")
    assert await Event.all().count() == 6
    hops = sorted(int(row.headers.get("x-relay-hops", 0)) for row in await Event.all())
    assert hops == [0, 1, 2, 3, 4, 5]

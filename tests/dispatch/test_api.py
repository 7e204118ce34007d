"""The endpoints / deliveries / replay API: auth, validation, 404s, pagination, shapes."""

from __future__ import annotations

import pytest

from dispatch.models import Endpoint
from tests.dispatch.conftest import (
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    unrouted,
    wait_for_statuses,
)
from tests.servers import wait_until

MISSING_EP = "ep_00000000000000000000000000"
MISSING_DLV = "dlv_00000000000000000000000000"
MISSING_EVT = "evt_00000000000000000000000000"

ENDPOINT_FIELDS = {
    "id", "url", "kind", "template", "description", "enabled", "disabled_reason", "event_types", "sources",
    "filter", "headers", "timeout_seconds", "max_in_flight", "rate_limit_per_second",
    "retry_schedule", "created_at", "updated_at",
}
DELIVERY_FIELDS = {
    "id", "event_id", "endpoint_id", "status", "attempts_count", "next_attempt_at",
    "last_status_code", "last_error", "created_at", "completed_at",
}


def routes(endpoint_id: str, delivery_id: str, event_id: str) -> list[tuple[str, str, dict | None]]:
    """Every route of this router: (method, path, JSON body)."""
    ep = f"/api/v1/endpoints/{endpoint_id}"
    return [
        ("GET", "/api/v1/endpoints", None),
        ("POST", "/api/v1/endpoints", {"url": "http://127.0.0.1:9/x"}),
        ("GET", ep, None),
        ("PATCH", ep, {"description": "x"}),
        ("GET", f"{ep}/secret", None),
        ("POST", f"{ep}/rotate-secret", None),
        ("POST", f"{ep}/enable", None),
        ("POST", f"{ep}/disable", None),
        ("POST", f"{ep}/test", None),
        ("POST", f"{ep}/recover", {"since": "2020-01-01T00:00:00Z"}),
        ("GET", f"{ep}/stats", None),
        ("GET", "/api/v1/deliveries", None),
        ("GET", f"/api/v1/deliveries/{delivery_id}", None),
        ("POST", f"/api/v1/deliveries/{delivery_id}/retry", None),
        ("POST", f"/api/v1/events/{event_id}/replay", {}),
        ("DELETE", ep, None),
    ]


async def test_create_answers_the_endpoint_with_its_secret_once(client, admin):
    created = await make_endpoint(
        client, admin, "http://127.0.0.1:9/hook", description="orders", event_types=["order.*"],
        sources=["shop"], filter={"data.amount": {"$gt": 10}}, headers={"Authorization": "x"},
        timeout_seconds=5, max_in_flight=3, rate_limit_per_second=2.5, retry_schedule=[1, 2])
    assert set(created) == ENDPOINT_FIELDS | {"secret"}
    assert created["id"].startswith("ep_")
    assert created["secret"].startswith("whsec_")
    assert created["enabled"] is True and created["disabled_reason"] is None
    assert created["filter"] == {"data.amount": {"$gt": 10}}
    assert created["retry_schedule"] == [1.0, 2.0]
    assert created["created_at"].endswith("+00:00")

    shown = (await client.get(f"/api/v1/endpoints/{created['id']}", headers=admin)).json()
    assert set(shown) == ENDPOINT_FIELDS
    listed = (await client.get("/api/v1/endpoints", headers=admin)).json()
    assert "secret" not in listed["data"][0]
    secret = (await client.get(f"/api/v1/endpoints/{created['id']}/secret", headers=admin)).json()
    assert secret == {"secret": created["secret"]}
    stored = await Endpoint.get(id=created["id"])
    assert created["secret"] not in stored.secret_encrypted

    defaults = await make_endpoint(client, admin, "https://example.invalid/hook")
    assert defaults["max_in_flight"] == 10
    assert defaults["event_types"] == [] and defaults["sources"] == []
    assert defaults["filter"] is None and defaults["retry_schedule"] is None
    assert defaults["timeout_seconds"] is None and defaults["rate_limit_per_second"] is None


async def test_every_route_needs_a_token_and_viewers_only_read(client, admin, viewer):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/hook")
    for method, path, body in routes(endpoint["id"], MISSING_DLV, MISSING_EVT):
        answer = await client.request(method, path, json=body)
        assert answer.status_code == 401, (method, path, answer.text)
        assert "detail" in answer.json()
        answer = await client.request(method, path, json=body,
                                      headers={"Authorization": "Bearer rly_wrong"})
        assert answer.status_code == 401, (method, path)
        answer = await client.request(method, path, json=body, headers=viewer)
        if method == "GET" and not path.endswith("/secret"):
            assert answer.status_code in (200, 404), (method, path, answer.text)
        else:
            assert answer.status_code == 403, (method, path, answer.text)
    assert (await client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=viewer)
            ).status_code == 200


async def test_unknown_ids_are_404(client, admin):
    for method, path, body in routes(MISSING_EP, MISSING_DLV, MISSING_EVT):
        if path in ("/api/v1/endpoints", "/api/v1/deliveries"):
            continue
        answer = await client.request(method, path, json=body, headers=admin)
        assert answer.status_code == 404, (method, path, answer.text)
        assert "detail" in answer.json()

    await make_source(client, admin, "shop")
    event_id = await post_event(client, "shop")
    answer = await client.post(f"/api/v1/events/{event_id}/replay", headers=admin,
                               json={"endpoint_id": MISSING_EP})
    assert answer.status_code == 404


@pytest.mark.parametrize(("fields", "named"), [
    ({"url": "ftp://127.0.0.1/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://127.0.0.2:9/x"}, "url"),
    ({"url": "http://[::1]:9/x"}, "url"),
    ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
    ({"filter": {"data.x": {"$regex": "a.*"}}}, "$regex"),
    ({"filter": {"$or": []}}, "filter"),
    ({"filter": [1]}, "filter"),
    ({"event_types": ["in valid"]}, "event_types"),
    ({"event_types": ["a*b"]}, "event_types"),
    ({"event_types": "order.paid"}, "event_types"),
    ({"sources": ["Not A Slug"]}, "sources"),
    ({"headers": {"Connection": "close"}}, "headers"),
    ({"headers": {"webhook-id": "x"}}, "headers"),
    ({"headers": {"Transfer-Encoding": "chunked"}}, "headers"),
    ({"headers": {"bad name": "x"}}, "headers"),
    ({"headers": {"x-a": "line\r\nbreak"}}, "headers"),
    ({"headers": {"x-a": 5}}, "headers"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"timeout_seconds": 61}, "timeout_seconds"),
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"max_in_flight": 1001}, "max_in_flight"),
    ({"rate_limit_per_second": 0}, "rate_limit_per_second"),
    ({"retry_schedule": [1, -1]}, "retry_schedule"),
    ({"retry_schedule": [1] * 21}, "retry_schedule"),
])
async def test_invalid_endpoints_are_422_naming_the_field(client, admin, fields, named):
    body = {"url": "http://127.0.0.1:9/hook", **fields}
    answer = await client.post("/api/v1/endpoints", headers=admin, json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/hook")
    answer = await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin, json=fields)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]


async def test_missing_url_null_fields_and_bad_json(client, admin):
    answer = await client.post("/api/v1/endpoints", headers=admin, json={})
    assert answer.status_code == 422 and "url" in answer.json()["detail"]
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/hook")
    for field in ("url", "enabled", "headers", "max_in_flight"):
        answer = await client.patch(f"/api/v1/endpoints/{endpoint['id']}", headers=admin,
                                    json={field: None})
        assert answer.status_code == 422 and field in answer.json()["detail"]
    answer = await client.post("/api/v1/endpoints", headers={**admin, "content-type":
                               "application/json"}, content=b"{nope")
    assert answer.status_code == 400


async def test_patch_changes_fields_and_enabled(client, admin):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/hook")
    path = f"/api/v1/endpoints/{endpoint['id']}"
    answer = await client.patch(path, headers=admin, json={
        "url": "http://127.0.0.1:9/other", "filter": {"type": "a"}, "retry_schedule": [3],
        "enabled": False})
    assert answer.status_code == 200, answer.text
    changed = answer.json()
    assert changed["url"] == "http://127.0.0.1:9/other"
    assert changed["filter"] == {"type": "a"} and changed["retry_schedule"] == [3.0]
    assert changed["enabled"] is False and changed["disabled_reason"]
    assert changed["updated_at"] > endpoint["updated_at"]
    answer = await client.patch(path, headers=admin, json={"filter": None, "enabled": True})
    assert answer.json()["filter"] is None and answer.json()["enabled"] is True
    assert answer.json()["description"] == ""


async def test_pagination_is_newest_first_with_a_cursor(client, admin):
    ids = [(await make_endpoint(client, admin, f"http://127.0.0.1:9/{n}"))["id"]
           for n in range(3)]
    first = (await client.get("/api/v1/endpoints?limit=2", headers=admin)).json()
    assert [e["id"] for e in first["data"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = (await client.get(f"/api/v1/endpoints?limit=2&cursor={first['next_cursor']}",
                               headers=admin)).json()
    assert [e["id"] for e in second["data"]] == [ids[0]]
    assert second["next_cursor"] is None
    assert (await client.get("/api/v1/endpoints?cursor=garbage", headers=admin)).status_code == 400
    assert (await client.get("/api/v1/endpoints?limit=0", headers=admin)).status_code == 422
    assert (await client.get("/api/v1/deliveries?limit=251", headers=admin)).status_code == 422
    assert (await client.get("/api/v1/deliveries?status=nope", headers=admin)).status_code == 422


async def test_secret_rotation_and_viewer_cannot_read_it(client, admin, viewer):
    endpoint = await make_endpoint(client, admin, "http://127.0.0.1:9/hook")
    path = f"/api/v1/endpoints/{endpoint['id']}"
    assert (await client.get(f"{path}/secret", headers=viewer)).status_code == 403
    rotated = await client.post(f"{path}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    assert set(rotated.json()) == ENDPOINT_FIELDS | {"secret"}
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    assert (await client.get(f"{path}/secret", headers=admin)).json() == {"secret": new_secret}


async def test_delete_cancels_open_deliveries(client, admin, sink):
    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/never"))
    event_id = await post_event(client, "shop")
    from dispatch.routing import Router

    await Router().route_all()
    [delivery] = await deliveries_of(event_id=event_id)
    assert delivery.status == "pending"

    answer = await client.delete(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)
    assert answer.status_code == 204 and answer.content == b""
    assert (await client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)
            ).status_code == 404
    assert (await client.delete(f"/api/v1/endpoints/{endpoint['id']}", headers=admin)
            ).status_code == 404
    listed = (await client.get("/api/v1/endpoints", headers=admin)).json()
    assert listed["data"] == []
    [delivery] = await deliveries_of(event_id=event_id)
    assert delivery.status == "cancelled" and delivery.completed_at is not None
    answer = await client.post(f"/api/v1/deliveries/{delivery.id}/retry", headers=admin)
    assert answer.status_code == 409


async def test_deliveries_list_filters_and_event_detail(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/bad", 500)
    good = await make_endpoint(client, admin, sink.url("/good"))
    bad = await make_endpoint(client, admin, sink.url("/bad"), retry_schedule=[])
    first = await post_event(client, "shop")
    second = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 2, endpoint_id=good["id"])
    await wait_for_statuses("failed", 2, endpoint_id=bad["id"])

    everything = (await client.get("/api/v1/deliveries", headers=admin)).json()
    assert len(everything["data"]) == 4 and everything["next_cursor"] is None
    assert set(everything["data"][0]) == DELIVERY_FIELDS
    by_endpoint = (await client.get(f"/api/v1/deliveries?endpoint={good['id']}",
                                    headers=admin)).json()["data"]
    assert {d["endpoint_id"] for d in by_endpoint} == {good["id"]} and len(by_endpoint) == 2
    by_event = (await client.get(f"/api/v1/deliveries?event={first}", headers=admin)).json()
    assert {d["event_id"] for d in by_event["data"]} == {first}
    failed = (await client.get("/api/v1/deliveries?status=failed", headers=admin)).json()
    assert {d["endpoint_id"] for d in failed["data"]} == {bad["id"]}
    assert failed["data"][0]["last_status_code"] == 500
    paged = (await client.get("/api/v1/deliveries?limit=3", headers=admin)).json()
    assert len(paged["data"]) == 3 and paged["next_cursor"]

    event = (await client.get(f"/api/v1/events/{second}", headers=admin)).json()
    assert {d["endpoint_id"] for d in event["deliveries"]} == {good["id"], bad["id"]}
    assert set(event["deliveries"][0]) == DELIVERY_FIELDS


async def test_stats(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/mixed", 500, 200)
    endpoint = await make_endpoint(client, admin, sink.url("/mixed"), retry_schedule=[0.05])
    event_id = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 1, event_id=event_id)

    stats = (await client.get(f"/api/v1/endpoints/{endpoint['id']}/stats", headers=admin)).json()
    assert stats["attempts"] == 2 and stats["failures"] == 1
    assert stats["success_rate"] == 0.5
    assert stats["p50_ms"] > 0 and stats["p95_ms"] >= stats["p50_ms"]
    assert stats["p99_ms"] >= stats["p95_ms"]
    assert stats["in_flight"] == 0 and stats["pending"] == 0
    assert stats["circuit"] == "closed"

    idle = await make_endpoint(client, admin, sink.url("/idle"))
    stats = (await client.get(f"/api/v1/endpoints/{idle['id']}/stats", headers=admin)).json()
    assert stats["attempts"] == 0 and stats["success_rate"] is None and stats["p50_ms"] is None


async def test_test_event_goes_to_that_endpoint_only(client, admin, sink, dispatcher):
    target = await make_endpoint(client, admin, sink.url("/target"))
    await make_endpoint(client, admin, sink.url("/bystander"))
    answer = await client.post(f"/api/v1/endpoints/{target['id']}/test", headers=admin)
    assert answer.status_code == 202, answer.text
    ids = answer.json()
    await wait_for_statuses("succeeded", 1, event_id=ids["event_id"])
    [got] = sink.received("/target")
    assert got.headers["x-relay-event-type"] == "relay.test"
    assert got.headers["x-relay-delivery-id"] == ids["delivery_id"]
    assert "x-relay-source" not in got.headers
    assert b"relay.test" in got.body
    # The router never routes the test event to anyone else.
    await post_event_and_wait(client, admin, sink)
    assert sink.count("/target") == 2 and sink.count("/bystander") == 1


async def post_event_and_wait(client, admin, sink) -> None:
    await make_source(client, admin, "shop")
    event_id = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 2, event_id=event_id)


async def test_replay_to_every_matching_endpoint_or_to_one(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    wants = await make_endpoint(client, admin, sink.url("/wants"), event_types=["order.*"])
    await make_endpoint(client, admin, sink.url("/other"), event_types=["invoice.*"])
    event_id = await post_event(client, "shop", {"type": "order.paid"},
                                {"x-custom": "kept"})
    # The source has no event-type rule: nothing matches order.* until the filter changes.
    async def routed() -> bool:
        return await unrouted(event_id) == 0

    await wait_until(routed,
                     message="the event to be routed")
    assert await deliveries_of(event_id=event_id) == []
    await client.patch(f"/api/v1/endpoints/{wants['id']}", headers=admin,
                       json={"event_types": []})

    answer = await client.post(f"/api/v1/events/{event_id}/replay", headers=admin, json={})
    assert answer.status_code == 202, answer.text
    assert answer.json()["count"] == 1
    await wait_until(lambda: sink.count("/wants") == 1, message="the replay")
    assert sink.count("/other") == 0

    other = await make_endpoint(client, admin, sink.url("/one"), event_types=["nothing"])
    answer = await client.post(f"/api/v1/events/{event_id}/replay", headers=admin,
                               json={"endpoint_id": other["id"]})
    assert answer.status_code == 202 and answer.json()["count"] == 1
    await wait_until(lambda: sink.count("/one") == 1, message="the replay to one endpoint")
    [got] = sink.received("/one")
    assert got.headers["webhook-id"] == event_id
    assert got.headers["x-custom"] == "kept"
    answer = await client.post(f"/api/v1/events/{event_id}/replay", headers=admin)
    assert answer.status_code == 202

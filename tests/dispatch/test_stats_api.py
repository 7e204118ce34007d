"""`GET /api/v1/stats/endpoints` and `GET /api/v1/stats/series` over HTTP, with a real
dispatcher delivering to a real sink: shapes, figures, validation, auth, OpenAPI."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.dispatch.conftest import (
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)

MISSING_EP = "ep_00000000000000000000000000"
STAT_FIELDS = {"endpoint_id", "success_rate", "attempts", "failures", "p50_ms", "p95_ms",
               "p99_ms", "in_flight", "pending", "circuit"}


async def test_health_of_every_endpoint_in_one_answer(client, admin, viewer, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/mixed", 500, 200)
    mixed = await make_endpoint(client, admin, sink.url("/mixed"), retry_schedule=[0.05])
    idle = await make_endpoint(client, admin, sink.url("/idle"), event_types=["never"])
    event_id = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 1, event_id=event_id)

    answer = await client.get("/api/v1/stats/endpoints", headers=viewer)
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert [row["endpoint_id"] for row in data] == sorted([mixed["id"], idle["id"]])
    assert all(set(row) == STAT_FIELDS for row in data)
    by_id = {row["endpoint_id"]: row for row in data}
    single = (await client.get(f"/api/v1/endpoints/{mixed['id']}/stats", headers=admin)).json()
    assert {**single, "endpoint_id": mixed["id"]} == by_id[mixed["id"]]
    assert by_id[mixed["id"]]["attempts"] == 2 and by_id[mixed["id"]]["failures"] == 1
    assert by_id[idle["id"]]["attempts"] == 0 and by_id[idle["id"]]["p50_ms"] is None

    await client.delete(f"/api/v1/endpoints/{idle['id']}", headers=admin)
    data = (await client.get("/api/v1/stats/endpoints", headers=admin)).json()["data"]
    assert [row["endpoint_id"] for row in data] == [mixed["id"]]

    refused = await client.get("/api/v1/stats/endpoints?limit=5", headers=admin)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("limit:")
    assert (await client.get("/api/v1/stats/endpoints")).status_code == 401


async def series(client, headers, **params) -> tuple[int, dict]:
    answer = await client.get(f"/api/v1/stats/series?{urlencode(params)}", headers=headers)
    return answer.status_code, answer.json()


async def test_series_of_a_delivered_event(client, admin, viewer, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/mixed", 500, 200)
    endpoint = await make_endpoint(client, admin, sink.url("/mixed"), retry_schedule=[0.05])
    other = await make_endpoint(client, admin, sink.url("/other"), event_types=["never"])
    event_id = await post_event(client, "shop")
    await wait_for_statuses("succeeded", 1, event_id=event_id)

    status, events = await series(client, viewer, metric="events")
    assert status == 200 and events["metric"] == "events" and events["step"] == 60
    assert len(events["points"]) == 60 and sum(p["value"] for p in events["points"]) == 1
    status, shop = await series(client, viewer, metric="events", source="shop", step=3600,
                                since="2026-01-01T00:00:00Z", until="2026-01-02T00:00:00Z")
    assert status == 200 and len(shop["points"]) == 24
    assert shop["points"][0] == {"t": "2026-01-01T00:00:00+00:00", "value": 0}
    assert all(type(point["value"]) is int for point in events["points"] + shop["points"])

    totals = {}
    for metric in ("deliveries", "failures", "success_rate", "p50_ms", "p95_ms"):
        status, answer = await series(client, admin, metric=metric, endpoint=endpoint["id"])
        assert status == 200, answer
        values = [p["value"] for p in answer["points"] if p["value"] is not None]
        totals[metric] = values
    assert sum(totals["deliveries"]) == 2 and sum(totals["failures"]) == 1
    assert all(0 <= rate <= 1 for rate in totals["success_rate"])
    assert totals["p50_ms"] and all(v > 0 for v in totals["p50_ms"] + totals["p95_ms"])
    status, none = await series(client, admin, metric="p50_ms", endpoint=other["id"])
    assert status == 200 and all(p["value"] is None for p in none["points"])


@pytest.mark.parametrize(("params", "status", "names"), [
    ({"metric": "latency"}, 422, "metric:"),
    ({}, 422, "metric:"),
    ({"metric": "events", "colour": "red"}, 422, "colour:"),
    ({"metric": "events", "step": "90"}, 422, "step:"),
    ({"metric": "events", "step": "abc"}, 422, "step:"),
    ({"metric": "events", "step": "60", "since": "2020-01-01T00:00:00Z"}, 422, "step:"),
    ({"metric": "events", "since": "soon"}, 422, "since:"),
    ({"metric": "events", "endpoint": MISSING_EP}, 422, "endpoint:"),
    ({"metric": "deliveries", "endpoint": MISSING_EP}, 404, "no endpoint"),
    ({"metric": "events", "source": "nowhere"}, 404, "no source"),
])
async def test_series_refuses_bad_parameters_by_name(client, admin, params, status, names):
    code, answer = await series(client, admin, **params)
    assert code == status, answer
    assert answer["detail"].startswith(names)


async def test_stats_routes_are_documented(client, db):
    schema = (await client.get("/api/v1/openapi.json")).json()
    operation = schema["paths"]["/api/v1/stats/series"]["get"]
    assert operation["description"] and operation["summary"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"metric", "since", "until", "step", "endpoint", "source"}
    assert all(p.get("description") for p in parameters.values())
    components = schema["components"]["schemas"]
    for name in ("SeriesOut", "PointOut", "EndpointHealthOut", "StatsOut"):
        properties = components[name]["properties"]
        assert all(field.get("description") for field in properties.values()), name
    assert "/api/v1/stats/endpoints" in schema["paths"]

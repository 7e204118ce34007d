"""What protects Relay and its subscribers: the SSRF guard end to end, per-endpoint
isolation, the circuit breaker."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

from aiohttp.abc import AbstractResolver

from dispatch.delivery_client import build_http_client
from dispatch.models import Attempt, Endpoint
from tests.dispatch.conftest import (
    Sink,
    deliveries_of,
    make_endpoint,
    make_source,
    post_event,
    wait_for_statuses,
)
from tests.servers import wait_until


class LoopbackNames(AbstractResolver):
    """Test DNS: a few made-up names that resolve to loopback addresses."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.names[host], "port": port,
                 "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


async def test_ssrf_guard_refuses_unlisted_addresses_end_to_end(
        client, admin, sink, start_dispatcher):
    forbidden = await Sink(host="127.0.0.2").start()
    try:
        names = {"refused.example.test": "127.0.0.2", "allowed.example.test": "127.0.0.1"}
        http = build_http_client(max_connections=10, timeout=5, allowlist=["127.0.0.1"],
                                 inner_resolver=LoopbackNames(names))
        await start_dispatcher(client=http)
        await make_source(client, admin, "shop")

        # An IP literal the guard refuses is refused when the endpoint is saved ...
        answer = await client.post("/api/v1/endpoints", headers=admin,
                                   json={"url": forbidden.url("/literal")})
        assert answer.status_code == 422 and "url" in answer.json()["detail"]
        # ... and if one gets into the database anyway, when it is attempted.
        literal = await make_endpoint(client, admin, sink.url("/literal"), retry_schedule=[0.05])
        await Endpoint.filter(id=literal["id"]).update(url=forbidden.url("/literal"),
                                                       updated_at=datetime.now(UTC))
        # A host name is checked where it resolves, at every attempt.
        by_name = await make_endpoint(
            client, admin, f"http://refused.example.test:{forbidden.port}/name",
            retry_schedule=[0.05])
        allowed = await make_endpoint(
            client, admin, f"http://allowed.example.test:{sink.port}/name")

        event_id = await post_event(client, "shop")
        await wait_for_statuses("succeeded", 1, event_id=event_id, endpoint_id=allowed["id"])
        for endpoint in (literal, by_name):
            [delivery] = await wait_for_statuses("failed", 1, event_id=event_id,
                                                 endpoint_id=endpoint["id"])
            assert delivery.last_error == "ssrf_blocked"
            attempts = await Attempt.filter(delivery_id=delivery.id)
            assert len(attempts) == 2
            assert {a.error for a in attempts} == {"ssrf_blocked"}
            assert {a.status_code for a in attempts} == {None}
            assert "127.0.0.2" in attempts[0].error_detail
        assert forbidden.count() == 0
        assert sink.count("/name") == 1
    finally:
        await forbidden.stop()


async def test_slow_and_failing_endpoints_do_not_starve_a_healthy_one(
        client, admin, sink, start_dispatcher):
    await start_dispatcher(concurrency=12)
    await make_source(client, admin, "shop")
    sink.respond("/hang", hang=True)
    sink.respond("/fail", 500)
    await make_endpoint(client, admin, sink.url("/hang"), timeout_seconds=3, max_in_flight=5,
                        retry_schedule=[0.05] * 10)
    await make_endpoint(client, admin, sink.url("/fail"), max_in_flight=5,
                        retry_schedule=[0.01] * 20)
    healthy = await make_endpoint(client, admin, sink.url("/healthy"))

    started = time.monotonic()
    events = [await post_event(client, "shop", {"n": n}) for n in range(30)]
    # Twelve slots; without per-endpoint caps the hanging endpoint would hold every one of
    # them for its 3 s timeout.
    await wait_until(lambda: sink.count("/healthy") == 30, timeout=2.5,
                     message="the healthy endpoint to get every event promptly")
    assert time.monotonic() - started < 2.5
    assert {r.headers["webhook-id"] for r in sink.received("/healthy")} == set(events)
    assert sink.count("/hang") <= 5
    await wait_for_statuses("succeeded", 30, endpoint_id=healthy["id"])


async def test_circuit_opens_then_one_probe_per_cooldown(client, admin, sink, start_dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/dead", *([500] * 6), 200)
    # Retries come 0.3 s after a failure: by then the whole first wave is settled.
    endpoint = await make_endpoint(client, admin, sink.url("/dead"),
                                   retry_schedule=[0.3] * 20, max_in_flight=10)
    for n in range(5):
        await post_event(client, "shop", {"n": n})
    await start_dispatcher(circuit_threshold=3, circuit_cooldown=1.0)

    async def opened() -> bool:
        row = await Endpoint.get(id=endpoint["id"])
        return row.circuit_opened_at is not None

    await wait_until(opened, message="the circuit to open")
    stats = (await client.get(f"/api/v1/endpoints/{endpoint['id']}/stats", headers=admin)).json()
    assert stats["circuit"] == "open"

    await wait_for_statuses("succeeded", 5, timeout=10, endpoint_id=endpoint["id"])
    arrivals = [r.at for r in sink.received("/dead")]
    timeline = [round(at - arrivals[0], 3) for at in arrivals]
    # 5 first tries fail and open the circuit; after the cool-down one probe fails (the
    # circuit opens again); after the next cool-down one probe succeeds; then the other 4.
    assert len(arrivals) == 11, timeline
    wave, first_probe, second_probe = arrivals[:5], arrivals[5], arrivals[6]
    assert first_probe - min(wave) >= 0.85, timeline
    assert second_probe - first_probe >= 0.85, timeline
    assert min(arrivals[7:]) > second_probe
    row = await Endpoint.get(id=endpoint["id"])
    assert row.circuit_opened_at is None and row.consecutive_failures == 0
    assert row.last_success_at is not None and row.first_failure_at is None
    for delivery in await deliveries_of(endpoint_id=endpoint["id"]):
        assert delivery.status == "succeeded"


async def test_max_in_flight_and_rate_limit_per_endpoint(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/narrow", delay=0.15)
    narrow = await make_endpoint(client, admin, sink.url("/narrow"), max_in_flight=2)
    throttled = await make_endpoint(client, admin, sink.url("/throttled"),
                                    rate_limit_per_second=4)
    for n in range(8):
        await post_event(client, "shop", {"n": n})

    await wait_for_statuses("succeeded", 8, timeout=15, endpoint_id=narrow["id"])
    await wait_for_statuses("succeeded", 8, timeout=15, endpoint_id=throttled["id"])
    narrow_requests = sink.received("/narrow")
    peak = max(sum(1 for other in narrow_requests
                   if other.at <= r.at < (other.answered_at or float("inf")))
               for r in narrow_requests)
    assert peak == 2
    arrivals = sorted(r.at for r in sink.received("/throttled"))
    # Paced evenly, one every 0.25 s: the last of 8 comes 1.75 s after the first.
    assert arrivals[-1] - arrivals[0] >= 1.6
    for start in arrivals:
        assert sum(1 for at in arrivals if start <= at < start + 1.0) <= 5

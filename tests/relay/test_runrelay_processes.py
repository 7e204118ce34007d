"""`runrelay`'s processes: web workers and dispatchers run as supervised children. Live
messages from a dispatcher process reach a dashboard WebSocket without Redis; a child
killed with SIGKILL comes back and no delivery is lost; SIGTERM stops every process (and
the embedded PostgreSQL) within the grace period; a child that keeps crashing stops all."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import psutil
import pytest
import websockets

from tests.dispatch.conftest import Sink
from tests.relay.test_runrelay import RunningRelay, _postmaster_running
from tests.servers import wait_until

GRACE = 3.0
SUPERVISOR_GRACE = GRACE + 15
EVENTS = 60


class Relay(RunningRelay):
    @property
    def token(self) -> str:
        found = re.search(r"(rly_[A-Za-z0-9_-]+)", self.output())
        assert found, self.output()
        return found.group(1)

    def children(self, role: str) -> list[psutil.Process]:
        marker = "relay.webserver" if role == "web" else "--supervised"
        return [child for child in psutil.Process(self.process.pid).children(recursive=True)
                if marker in " ".join(child.cmdline())]


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    data_dir = tempfile.mkdtemp(prefix="relay-processes-")
    running = Relay(data_dir, "--web-workers", "2", "--dispatchers", "2",
                    RELAY_TARGET_ALLOWLIST="127.0.0.1", RELAY_LEASE_SECONDS="1",
                    RELAY_SHUTDOWN_GRACE=str(GRACE), RELAY_RETRY_SCHEDULE="0.2,0.4,0.8")
    running.data_dir = data_dir  # type: ignore[attr-defined]
    try:
        running.wait_ready()
        deadline = time.monotonic() + 60
        while running.output().count("dispatching as") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a subprocess's log with a deadline
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


@pytest.fixture
async def api(relay) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=relay.base, timeout=10,
                                 headers={"Authorization": f"Bearer {relay.token}"}) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = await Sink().start()
    yield server
    await server.stop()


async def _source_and_endpoint(api: httpx.AsyncClient, slug: str, url: str) -> None:
    created = await api.post("/api/v1/sources", json={"slug": slug})
    assert created.status_code == 201, created.text
    created = await api.post("/api/v1/endpoints", json={
        "url": url, "sources": [slug], "max_in_flight": 100, "timeout_seconds": 3})
    assert created.status_code == 201, created.text


async def test_live_messages_from_a_dispatcher_process_reach_a_websocket_client(
        relay, api, sink):
    assert len(relay.children("web")) == 2 and len(relay.children("dispatcher")) == 2
    await _source_and_endpoint(api, "watched", sink.url("/watched"))
    url = f"ws://127.0.0.1:{relay.port}/ws/live?token={relay.token}"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "subscribe", "sources": ["watched"]}))
        event_id = None
        subscribed = False
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frame = json.loads(await socket.recv())
            items = frame["items"] if frame.get("type") == "batch" else [frame]
            for item in items:
                if item["type"] == "subscribed":
                    subscribed = True
                elif item["type"] == "stats" and subscribed and event_id is None:
                    # A second after connecting: the web worker listens by now.
                    accepted = await api.post("/in/watched", content=b'{"n": 1}')
                    assert accepted.status_code == 202
                    event_id = accepted.json()["id"]
                elif item["type"] == "event.received" and item["event"]["id"] == event_id:
                    seen.add("event.received")
                elif (item["type"] == "delivery.succeeded"
                      and item["delivery"]["event_id"] == event_id):
                    seen.add("delivery.succeeded")
            if seen == {"event.received", "delivery.succeeded"}:
                break
    assert seen == {"event.received", "delivery.succeeded"}
    assert sink.count("/watched") == 1


async def test_a_killed_dispatcher_comes_back_and_no_delivery_is_lost(relay, api, sink):
    sink.respond("/slow", delay=0.3)
    await _source_and_endpoint(api, "kill", sink.url("/slow"))
    for n in range(EVENTS):
        assert (await api.post("/in/kill", content=json.dumps({"n": n}).encode())
                ).status_code == 202
    await wait_until(lambda: sink.count("/slow") >= 10, timeout=30, message="deliveries")
    victim = relay.children("dispatcher")[0]
    victim.send_signal(signal.SIGKILL)
    await wait_until(lambda: f"(pid {victim.pid}) was killed by SIGKILL; restarted it"
                     in relay.output(), timeout=10, message="the restart line")
    await wait_until(lambda: len({r.delivery_id for r in sink.received("/slow")}) == EVENTS,
                     timeout=60, message="every delivery received")
    await wait_until(lambda: len(relay.children("dispatcher")) == 2, timeout=30,
                     message="two dispatchers again")

    async def all_succeeded() -> bool:
        answer = await api.get("/api/v1/deliveries", params={"status": "succeeded",
                                                             "limit": 100})
        return len(answer.json()["data"]) >= EVENTS + 1

    await wait_until(all_succeeded, timeout=30, message="every delivery succeeded")
    copies = Counter(r.delivery_id for r in sink.received("/slow"))
    twice = [delivery for delivery, count in copies.items() if count > 1]
    # At least once: only what the killed process had in flight may arrive twice.
    assert len(twice) <= 100, copies


async def test_a_killed_web_worker_comes_back(relay, api):
    victim = relay.children("web")[0]
    victim.send_signal(signal.SIGKILL)
    await wait_until(lambda: f"(pid {victim.pid}) was killed by SIGKILL; restarted it"
                     in relay.output(), timeout=10, message="the restart line")
    await wait_until(lambda: len(relay.children("web")) == 2, timeout=10,
                     message="two web workers again")
    for _ in range(10):
        assert (await api.get("/readyz")).status_code == 200


def test_sigterm_stops_every_process_within_the_grace_period(relay):
    children = relay.children("web") + relay.children("dispatcher")
    assert len(children) == 4
    started = time.monotonic()
    code = relay.stop()
    took = time.monotonic() - started
    assert code == 0, relay.output()
    assert took < SUPERVISOR_GRACE, f"took {took:.1f} s"
    assert not [child.pid for child in children if psutil.pid_exists(child.pid)
                and child.status() != psutil.STATUS_ZOMBIE]
    assert "Relay stopped." in relay.output()
    assert not _postmaster_running(relay.data_dir)


def test_a_child_that_keeps_crashing_stops_everything():
    data_dir = tempfile.mkdtemp(prefix="relay-crashing-")
    relay = RunningRelay(data_dir, "--web-workers", "1", "--dispatchers", "1",
                         RELAY_DISPATCH_CONCURRENCY="0")
    try:
        code = relay.process.wait(timeout=180)
    finally:
        relay.out.close()
    output = relay.output()
    assert code != 0, output
    assert output.count("exited with code 1; restarted it") == 4, output
    assert "crashed 5 times within 60 s: stopping Relay" in output
    assert not _postmaster_running(data_dir)
    assert not os.path.exists(os.path.join(data_dir, "pgdata", "postmaster.pid"))

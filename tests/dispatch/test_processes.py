"""Dispatchers as real processes (`manage.py dispatch`): a crash loses nothing, two of them
never send the same delivery at the same time, SIGTERM finishes or hands back work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dispatch.models import Delivery
from tests.dispatch.conftest import make_endpoint, make_source, post_event, wait_for_statuses
from tests.servers import wait_until

ROOT = Path(__file__).resolve().parents[2]


class DispatcherProcess:
    def __init__(self, **env: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix="relay-dispatch-", suffix=".log")[1])
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "dispatch"], cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RELAY_DATABASE_URL": os.environ["RELAY_DATABASE_URL"],
                     "PYTHONUNBUFFERED": "1", **env})

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self) -> None:
        await wait_until(lambda: "Dispatching as" in self.output or self.process.poll() is not None,
                         timeout=30, message="the dispatcher process to start")
        assert self.process.poll() is None, self.output

    async def exited(self, timeout: float = 10.0) -> int:
        """Wait for the process to end (without blocking the loop the sinks run in)."""
        await wait_until(lambda: self.process.poll() is not None, timeout=timeout,
                         message="the dispatcher process to exit")
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.log.unlink(missing_ok=True)


@pytest.fixture
def spawn(db):
    started: list[DispatcherProcess] = []

    def start(**env: str) -> DispatcherProcess:
        process = DispatcherProcess(**env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


async def test_a_killed_dispatcher_loses_nothing(client, admin, sink, spawn):
    await make_source(client, admin, "shop")
    sink.respond("/slow", delay=0.4)
    endpoint = await make_endpoint(client, admin, sink.url("/slow"), timeout_seconds=2,
                                   max_in_flight=100)
    events = [await post_event(client, "shop", {"n": n}) for n in range(40)]

    first = spawn(RELAY_LEASE_SECONDS="1", RELAY_DISPATCH_CONCURRENCY="10")
    await first.ready()
    await wait_until(lambda: sink.count("/slow") >= 15, timeout=20,
                     message="the first dispatcher to be mid-way")
    first.process.send_signal(signal.SIGKILL)
    await first.exited()
    in_flight = await Delivery.filter(status="delivering").count()
    assert in_flight > 0, "the kill should leave leased deliveries behind"

    second = spawn(RELAY_LEASE_SECONDS="1", RELAY_DISPATCH_CONCURRENCY="20")
    await second.ready()
    await wait_for_statuses("succeeded", 40, timeout=30, endpoint_id=endpoint["id"])
    assert {r.headers["webhook-id"] for r in sink.received("/slow")} == set(events)
    assert "Traceback" not in second.output, second.output


async def test_two_dispatchers_never_send_one_delivery_at_once(client, admin, sink, spawn):
    await make_source(client, admin, "shop")
    # Every third answer fails, so retries are claimed while other sends are in flight.
    sink.respond("/shared", 200, 200, 500, delay=0.15)
    sink.plans["/shared"].statuses = [200, 200, 500] * 100 + [200]
    endpoint = await make_endpoint(client, admin, sink.url("/shared"), max_in_flight=100,
                                   retry_schedule=[0.05] * 10)
    for n in range(60):
        await post_event(client, "shop", {"n": n})

    concurrency = {"RELAY_DISPATCH_CONCURRENCY": "6"}
    one, two = spawn(**concurrency), spawn(**concurrency)
    await one.ready()
    await two.ready()
    await wait_for_statuses("succeeded", 60, timeout=40, endpoint_id=endpoint["id"])

    received = sink.received("/shared")
    assert sink.overlaps == []
    sends = [(r.delivery_id, r.attempt) for r in received]
    assert len(sends) == len(set(sends)), "a delivery attempt was sent twice"
    peak = max(sum(1 for other in received
                   if other.at <= r.at < (other.answered_at or float("inf")))
               for r in received)
    assert peak > 6, f"both dispatchers should have been sending (peak {peak})"
    for process in (one, two):
        assert "Traceback" not in process.output, process.output


async def test_sigterm_finishes_in_flight_work_or_hands_it_back(client, admin, sink, spawn):
    await make_source(client, admin, "shop")
    sink.respond("/quick", delay=0.5)
    sink.respond("/stuck", hang=True)
    quick = await make_endpoint(client, admin, sink.url("/quick"), event_types=[])
    stuck = await make_endpoint(client, admin, sink.url("/stuck"), timeout_seconds=30)
    event_id = await post_event(client, "shop")

    process = spawn(RELAY_SHUTDOWN_GRACE="1.5")
    await process.ready()
    await wait_until(lambda: sink.count("/quick") == 1 and sink.count("/stuck") == 1,
                     message="both sends to be in flight")
    process.process.send_signal(signal.SIGTERM)
    assert await process.exited(timeout=15) == 0, process.output
    assert "Dispatcher stopped." in process.output

    [done] = await wait_for_statuses("succeeded", 1, event_id=event_id, endpoint_id=quick["id"])
    assert done.attempts_count == 1
    handed_back = await Delivery.get(event_id=event_id, endpoint_id=stuck["id"])
    assert handed_back.status == "pending"
    assert handed_back.lease_owner is None and handed_back.next_attempt_at is not None


async def run_command(*args: str) -> tuple[int, str]:
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def test_recover_command(client, admin, sink, dispatcher):
    await make_source(client, admin, "shop")
    sink.respond("/later", 500)
    endpoint = await make_endpoint(client, admin, sink.url("/later"), retry_schedule=[])
    events = [await post_event(client, "shop", {"n": n}) for n in range(3)]
    await wait_for_statuses("failed", 3, endpoint_id=endpoint["id"])

    sink.respond("/later", 200)
    code, output = await run_command("recover", "--endpoint", endpoint["id"],
                                     "--since", "2020-01-01T00:00:00Z")
    assert code == 0, output
    assert "Recovered 3 failed deliveries" in output
    await wait_for_statuses("succeeded", 3, endpoint_id=endpoint["id"])
    assert sink.count("/later") == 6
    assert {r.headers["webhook-id"] for r in sink.received("/later")} == set(events)

    code, output = await run_command("recover", "--endpoint", "ep_missing", "--since", "2020-01-01")
    assert code != 0 and "no endpoint with id 'ep_missing'" in output
    code, output = await run_command("recover", "--endpoint", endpoint["id"], "--since", "soon")
    assert code != 0 and "not an ISO 8601 time" in output

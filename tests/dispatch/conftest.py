"""Fixtures for the dispatcher's tests: real subscriber servers ("sinks") on loopback that
record what arrives and answer as told, and dispatchers run in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.servers import free_port, wait_until


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered_at: float | None = None

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("x-relay-delivery-id")

    @property
    def attempt(self) -> int:
        return int(self.headers.get("x-relay-attempt", "0"))


@dataclass
class Plan:
    """How a path answers: `statuses` in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    delays: list[float] | None = None
    """Per call, like `statuses` (overrides `delay`)."""
    hang: bool = False
    hang_after_body: bool = False
    """Send the headers and the body, then never finish the response."""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    calls: int = 0

    def next_answer(self) -> tuple[int, float]:
        index = self.calls
        self.calls += 1
        status = self.statuses[min(index, len(self.statuses) - 1)]
        delay = self.delays[min(index, len(self.delays) - 1)] if self.delays else self.delay
        return status, delay


class Sink:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.requests: list[Received] = []
        self.plans: dict[str, Plan] = {}
        self.active: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self._runner: web.AppRunner | None = None
        self._counter = itertools.count(1)

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def path(self, prefix: str = "/hook") -> str:
        """A fresh path, so several endpoints can share one sink."""
        return f"{prefix}-{next(self._counter)}"

    def respond(self, path: str, *statuses: int, **plan) -> None:
        self.plans[path] = Plan(statuses=list(statuses) or [200], **plan)

    def received(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.received(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = Received(request.path, headers, await request.read(), time.monotonic())
        self.requests.append(record)
        delivery = record.delivery_id or ""
        self.active[delivery] += 1
        if self.active[delivery] > 1:
            self.overlaps.append(delivery)
        try:
            plan = self.plans.setdefault(request.path, Plan())
            status, delay = plan.next_answer()
            if plan.hang:
                await asyncio.Event().wait()
            if delay:
                await asyncio.sleep(delay)
            if plan.hang_after_body:
                response = web.StreamResponse(status=status, headers=plan.headers)
                response.enable_chunked_encoding()
                await response.prepare(request)
                await response.write(plan.body)
                await asyncio.Event().wait()
            return web.Response(status=status, headers=plan.headers, body=plan.body)
        finally:
            self.active[delivery] -= 1
            record.answered_at = time.monotonic()

    async def start(self) -> Sink:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def sink():
    server = await Sink().start()
    yield server
    await server.stop()


@pytest.fixture
async def db_left_empty(db):
    """`db`, emptied again afterwards: endpoints made straight in the database (fake
    secrets) must not be left with due deliveries for a later test's dispatcher processes,
    which share the database and cannot decrypt them."""
    from tortoise import connections

    yield
    await connections.get("default").execute_script(
        "DELETE FROM attempt; DELETE FROM delivery; DELETE FROM event; DELETE FROM endpoint")


@pytest.fixture
async def start_dispatcher(db):
    """Start a dispatcher in the test's event loop: `await start_dispatcher(**options)`."""
    from dispatch.worker import Dispatcher

    started: list[Dispatcher] = []

    async def start(**options) -> Dispatcher:
        options.setdefault("poll_interval", 0.5)
        dispatcher = Dispatcher(**options)
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        if not dispatcher.stopping:
            await dispatcher.stop()


@pytest.fixture
async def dispatcher(start_dispatcher):
    return await start_dispatcher()


# --- helpers ---------------------------------------------------------------------------------


async def make_source(client, admin, slug: str = "shop", **fields) -> dict:
    answer = await client.post("/api/v1/sources", headers=admin, json={"slug": slug, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def make_endpoint(client, admin, url: str, **fields) -> dict:
    answer = await client.post("/api/v1/endpoints", headers=admin, json={"url": url, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def post_event(client, slug: str, body: bytes | dict = b'{"type":"order.paid"}',
                     headers: dict | None = None) -> str:
    if isinstance(body, dict):
        import json

        body = json.dumps(body).encode()
    answer = await client.post(f"/in/{slug}", content=body,
                               headers={"content-type": "application/json", **(headers or {})})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


async def deliveries_of(event_id: str | None = None, endpoint_id: str | None = None) -> list:
    from dispatch.models import Delivery

    query = Delivery.all()
    if event_id:
        query = query.filter(event_id=event_id)
    if endpoint_id:
        query = query.filter(endpoint_id=endpoint_id)
    return await query.order_by("id")


async def unrouted(event_id: str | None = None) -> int:
    """Events (or that one) stored and not routed yet: still in the router's queue."""
    from dispatch.queue import pooled

    async with pooled() as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM event_unrouted WHERE $1::text IS NULL OR event_id = $1",
            event_id)


async def wait_for_statuses(expected: str, count: int, timeout: float = 10.0,
                            **filters) -> list:
    """Wait until `count` deliveries (matching filters) all have status `expected`."""
    rows: list = []

    async def done() -> bool:
        nonlocal rows
        rows = await deliveries_of(**filters)
        return len(rows) == count and all(row.status == expected for row in rows)

    await wait_until(done, timeout=timeout,
                     message=f"{count} deliveries {expected} ({filters})")
    return rows


@pytest.fixture
async def platforms():
    """Fake Slack, Discord and Teams receivers (tests/dispatch/platforms.py)."""
    from tests.dispatch.platforms import Platforms

    server = await Platforms().start()
    yield server
    await server.stop()


def provider_sample(name: str) -> dict:
    """A sample provider webhook from hooks/fixtures (`github.push`, `stripe.invoice.paid`):
    {"provider", "event_type", "headers", "body"}."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "hooks" / "fixtures" / f"{name}.json"
    return json.loads(path.read_text())


@dataclass
class Heard:
    """Notifications received on one channel, on a listening pooled connection."""

    channels: list[str]
    connection: Any

    async def delivered(self) -> None:
        """A round trip on the listening session: PostgreSQL sends it what was notified
        when it ends a transaction, so afterwards nothing notified before is in flight."""
        await self.connection.fetchval("SELECT 1")


@contextlib.asynccontextmanager
async def listening(channel: str = "relay_due") -> AsyncIterator[Heard]:
    from dispatch.queue import pooled

    heard = Heard([], None)

    def on_notify(connection, pid, name, payload) -> None:
        heard.channels.append(name)

    async with pooled() as listener:
        heard.connection = listener
        await listener.add_listener(channel, on_notify)
        try:
            yield heard
        finally:
            await listener.remove_listener(channel, on_notify)

"""Fixtures for the live stream and dashboard tests: the live bus in the test loop, a real
redis-server on loopback, the Redis channel layer, a subscriber sink, a dispatcher, and a
headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.dispatch.conftest import sink  # noqa: F401 - the subscriber endpoint fixture
from tests.servers import free_port, wait_until

REDIS_SERVER = "/usr/bin/redis-server"
HAVE_REDIS = Path(REDIS_SERVER).exists()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# --- the live bus and hub -----------------------------------------------------------------------


@pytest.fixture
async def live_bus():
    """Relay's live bus sending from the test loop (lifespan is off in `relay_server`)."""
    from kernel.bus import bus

    started = not bus.running
    bus.start()
    yield bus
    if started:
        await bus.stop()


@pytest.fixture(autouse=True)
async def _no_clients_left():
    """Every test starts and ends with the hub idle (no client, no group membership)."""
    from live.hub import hub

    yield
    # A browser context closed at the end of a test: its socket closes when the server sees
    # the TCP close, which can take seconds on a loaded machine.
    await wait_until(lambda: not hub.clients, timeout=20, message="live clients to disconnect")
    await hub.stop()


# --- Redis ----------------------------------------------------------------------------------------


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="relay-test-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--save", "", "--appendonly", "no", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def wait_ready(self) -> None:
        """Until our redis-server answers (not another one that took the port first)."""

        async def answers() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited (port {self.port} taken?)")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.write(b"INFO server\r\n")
            await writer.drain()
            size = int((await reader.readline())[1:])
            info = (await reader.readexactly(size + 2)).decode()
            writer.close()
            return f"process_id:{self.process.pid}\r\n" in info

        await wait_until(answers, timeout=10, message="redis-server to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
async def redis_server():
    if not HAVE_REDIS:
        pytest.skip(f"{REDIS_SERVER} is missing: apt-get install -y redis-server")
    for _ in range(3):
        server = RedisServer()
        server.start()
        try:
            await server.wait_ready()
            break
        except RuntimeError:
            server.stop()
    yield server
    server.stop()


@pytest.fixture
async def redis_layer(redis_server):
    """Channels' Redis pub/sub layer (as in production) instead of the in-memory one."""
    from channels.layers import get_channel_layer
    from django.test import override_settings

    from live.hub import hub

    await hub.stop()
    config = {"default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": redis_server.url, "socket_timeout": None}]},
    }}
    with override_settings(CHANNEL_LAYERS=config):
        layer = get_channel_layer()
        yield layer
        await wait_until(lambda: not hub.clients, timeout=5, message="live clients to disconnect")
        await hub.stop()
        with contextlib.suppress(Exception):
            await layer.flush()


# --- a subscriber and a dispatcher ----------------------------------------------------------------


def dispatch_api_missing() -> str | None:
    """Why the dispatcher's part of a test cannot run here, or None when it can."""
    try:
        import dispatch.api
        import dispatch.worker  # noqa: F401
    except ImportError as exc:
        return f"the dispatcher is not built yet (dispatch.api / dispatch.worker: {exc})"
    return None


@pytest.fixture
async def running_dispatcher(db):
    reason = dispatch_api_missing()
    if reason:
        pytest.skip(reason)
    from dispatch.worker import Dispatcher

    dispatcher = Dispatcher(poll_interval=0.5)
    await dispatcher.start()
    yield dispatcher
    if not dispatcher.stopping:
        await dispatcher.stop()


# --- helpers ---------------------------------------------------------------------------------------


async def make_source(client, admin, slug: str = "shop", **fields) -> dict:
    answer = await client.post("/api/v1/sources", headers=admin, json={"slug": slug, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def post_webhook(client, slug: str, payload: dict | bytes | None = None,
                       content_type: str = "application/json") -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload or {"type": "order.paid"}).encode()
    answer = await client.post(f"/in/{slug}", content=body, headers={"content-type": content_type})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


class LiveReader:
    """Collects what a WebsocketCommunicator receives, batches flattened into items."""

    def __init__(self, communicator) -> None:
        self.communicator = communicator
        self.frames: list[dict] = []
        self.items: list[dict] = []
        self.closed: dict | None = None

    async def pump(self, timeout: float = 0.05) -> None:
        """Take what arrived within `timeout` (the communicator's own receive_from would
        cancel the application on a timeout)."""
        while True:
            try:
                output = await asyncio.wait_for(self.communicator.output_queue.get(), timeout)
            except TimeoutError:
                return
            if output["type"] == "websocket.close":
                self.closed = output
                return
            frame = json.loads(output["text"])
            self.frames.append(frame)
            self.items.extend(frame["items"] if frame.get("type") == "batch" else [frame])

    async def wait_for(self, predicate, timeout: float = 5.0, message: str = "a live message"):
        async def seen() -> bool:
            await self.pump()
            return any(predicate(item) for item in self.items)

        await wait_until(seen, timeout=timeout, message=message)
        return next(item for item in self.items if predicate(item))

    def of_type(self, kind: str) -> list[dict]:
        return [item for item in self.items if item.get("type") == kind]


async def connect(path: str = "/ws/live", headers: list | None = None):
    """A WebsocketCommunicator on Relay's whole ASGI application; returns (connected, it)."""
    from channels.testing import WebsocketCommunicator

    from relay.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await communicator.connect(timeout=5)
    return connected, communicator


# --- a real browser --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
async def browser():
    """Debian's Chromium, headless, shared by a module's tests."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        url = message.location.get("url") or ""
        self.errors.append(f"console: {message.text} ({url})")


@pytest.fixture
async def open_dashboard(browser, relay_server):
    """`await open_dashboard(token, **context_options)` → (page, console), logged in; the
    browser contexts are closed when the test ends (their sockets with them)."""
    contexts = []

    async def open_(token: str, **context_options):
        context = await browser.new_context(**context_options)
        contexts.append(context)
        page = await context.new_page()
        console = Console(page)
        await page.goto(f"{relay_server}/dashboard/")
        assert page.url.endswith("/dashboard/login")
        await page.fill("#token", token)
        await page.click("form button[type=submit]")
        await page.wait_for_url(f"{relay_server}/dashboard/")
        await page.wait_for_selector("#connection[data-state=live]", timeout=5000)
        return page, console

    yield open_
    # Leave every page first: a navigation closes the page's WebSocket with a close frame
    # at once, where closing the context may leave the server to notice the lost TCP
    # connection much later. Then close the contexts.
    for context in contexts:
        for page in context.pages:
            with contextlib.suppress(Exception):
                await page.goto("about:blank")
        await context.close()



"""The live hub: one per process, between the channel layer and this process's live clients.

While at least one client is connected, the hub is a member of the `relay.live` group
(one subscription per process, not one per client), decodes each message once, encodes
it to JSON once (live.encoding), and hands the texts to every client whose subscription
wants them: clients that want everything share one text per batch, encoded in one call;
the items are encoded one by one only when some client narrowed its subscription.
It also sends the `stats` snapshot to its own clients every second, so with several web
processes each one serves its own clients and nobody gets a snapshot twice. When the
last client leaves, the hub leaves the group and stops.

If the channel layer is unreachable (Redis down), clients stay connected and keep
receiving `stats`; the layer reconnects and re-subscribes by itself, and the hub keeps
trying to join the group until it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kernel.bus import LAYER_MESSAGE_TYPE, LIVE_GROUP
from live.encoding import encode, encode_joined
from live.outbox import Outbox
from live.subscription import Subscription

log = logging.getLogger("relay.live")

STATS_INTERVAL = 1.0
STATS_TIMEOUT = 0.9
REJOIN_INTERVAL = 3600.0
"""Group membership in Channels' core layers expires after a day: renew it hourly."""
RETRY_INTERVAL = 1.0
RECENT_EVENTS = 20_000
TOKEN_CHECK_TICKS = 60
"""Every minute the hub closes the streams whose token was revoked meanwhile."""


class LiveClient(Protocol):
    subscription: Subscription
    outbox: Outbox
    token_id: str | None

    def wake(self) -> None: ...

    def revoke(self) -> None: ...


class RecentSources:
    """Event id → source slug for the last N events this process saw arrive."""

    def __init__(self, size: int = RECENT_EVENTS) -> None:
        self._slugs: dict[str, str] = {}
        self._order: deque[str] = deque()
        self._size = size

    def remember(self, event_id: str, slug: str) -> None:
        if event_id in self._slugs:
            return
        if len(self._order) >= self._size:
            self._slugs.pop(self._order.popleft(), None)
        self._slugs[event_id] = slug
        self._order.append(event_id)

    def get(self, event_id: str, default: str | None = None) -> str | None:
        return self._slugs.get(event_id, default)


StatsProvider = Callable[[], Awaitable[dict[str, Any]]]


async def _database_stats() -> dict[str, Any]:
    from live.stats import current_stats

    return await current_stats()


class LiveHub:
    def __init__(self, stats_provider: StatsProvider = _database_stats) -> None:
        self.clients: set[LiveClient] = set()
        self.stats_provider = stats_provider
        self.sources = RecentSources()
        self.channel: str | None = None
        self.received = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stats_failing = False
        self._joined: asyncio.Event | None = None

    async def wait_joined(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until this process receives the live group's
        messages, so a client accepted afterwards misses nothing published after it."""
        if self._joined is None:
            return False
        try:
            await asyncio.wait_for(self._joined.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def add(self, client: LiveClient) -> None:
        self.clients.add(client)
        if not self.running:
            loop = asyncio.get_running_loop()
            self._joined = asyncio.Event()
            self._tasks = [
                loop.create_task(self._receive_loop(), name="relay-live-hub"),
                loop.create_task(self._stats_loop(), name="relay-live-stats"),
            ]

    async def remove(self, client: LiveClient) -> None:
        self.clients.discard(client)
        if not self.clients:
            await self.stop()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- from the channel layer ------------------------------------------------------------

    async def _join(self, layer: Any) -> str:
        """A channel of this process in the live group; retried until the layer answers."""
        channel: str | None = None
        warned = False
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel("relay.live.")
                await layer.group_add(LIVE_GROUP, channel)
                if warned:
                    log.info("live: joined the live group again")
                return channel
            except Exception as exc:  # noqa: BLE001 - keep trying; clients still get stats
                if not warned:
                    log.warning("live: cannot join the live group (%s: %s); retrying",
                                type(exc).__name__, exc)
                    warned = True
                await asyncio.sleep(RETRY_INTERVAL)

    async def _receive_loop(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        channel = self.channel = await self._join(layer)
        if self._joined is not None:
            self._joined.set()
        renew = asyncio.get_running_loop().create_task(self._renew(layer, channel))
        try:
            while True:
                try:
                    envelope = await layer.receive(channel)
                except Exception as exc:  # noqa: BLE001 - the layer reconnects; keep listening
                    log.warning("live: receiving from the channel layer failed (%s: %s)",
                                type(exc).__name__, exc)
                    await asyncio.sleep(RETRY_INTERVAL)
                    continue
                if envelope.get("type") != LAYER_MESSAGE_TYPE:
                    continue
                try:
                    self.dispatch(envelope.get("message"))
                except Exception:  # one bad message must not end the stream
                    log.exception("live: could not hand a message to the clients")
        finally:
            renew.cancel()
            if self.channel == channel:
                self.channel = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(layer.group_discard(LIVE_GROUP, channel), 2.0)

    async def _renew(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_INTERVAL)
            with contextlib.suppress(Exception):
                await layer.group_add(LIVE_GROUP, channel)

    def dispatch(self, message: Any) -> None:
        """Hand one bus message (a single message or a batch) to the clients that want it."""
        if not isinstance(message, dict):
            return
        if message.get("type") == "batch":
            items = [item for item in message.get("items") or () if isinstance(item, dict)]
            dropped = message.get("dropped") or 0
        else:
            items, dropped = [message], 0
        self.received += len(items)
        for item in items:
            if item.get("type") == "event.received":
                event = item.get("event") or {}
                if isinstance(event.get("id"), str) and isinstance(event.get("source"), str):
                    self.sources.remember(event["id"], event["source"])
        everything: str | None = None
        texts: list[str] | None = None
        for client in list(self.clients):
            subscription, outbox = client.subscription, client.outbox
            if dropped:
                outbox.shed(dropped)
            if subscription.everything:
                if everything is None:
                    everything = encode_joined(items)
                outbox.put_chunk(everything, len(items))
            else:
                if texts is None:
                    texts = [encode(item) for item in items]
                chosen = [text for item, text in zip(items, texts, strict=True)
                          if subscription.matches(item, self.sources)]
                outbox.put_chunk(",".join(chosen), len(chosen))
            if outbox.pending:
                client.wake()

    # --- stats, every second, to this process's clients --------------------------------------

    async def _stats_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        ticks = 0
        while True:
            next_tick += STATS_INTERVAL
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            started = time.monotonic()
            snapshot = await self._snapshot()
            if snapshot is not None:
                self.broadcast(encode({"type": "stats", "stats": snapshot}))
            ticks += 1
            if ticks % TOKEN_CHECK_TICKS == 0:
                await self.close_revoked()
            if time.monotonic() - started > STATS_INTERVAL:
                next_tick = loop.time()

    async def close_revoked(self) -> None:
        from kernel.models import ApiToken

        clients = [client for client in self.clients if client.token_id]
        if not clients:
            return
        try:
            alive: set[Any] = set(await ApiToken.filter(
                id__in={client.token_id for client in clients}, revoked_at=None,
            ).values_list("id", flat=True))
        except Exception:  # noqa: BLE001 - checked again next minute
            return
        for client in clients:
            if client.token_id not in alive:
                self.clients.discard(client)
                client.revoke()

    async def _snapshot(self) -> dict[str, Any] | None:
        try:
            snapshot = await asyncio.wait_for(self.stats_provider(), STATS_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - stats are skipped, the stream goes on
            if not self._stats_failing:
                reason = str(exc) or f"no answer within {STATS_TIMEOUT:g} s"
                log.warning("live: cannot compute stats (%s: %s); skipped until it works",
                            type(exc).__name__, reason)
                self._stats_failing = True
            return None
        self._stats_failing = False
        return snapshot

    def broadcast(self, text: str) -> None:
        """Send one encoded message to every client, whatever it subscribed to."""
        for client in list(self.clients):
            client.outbox.put(text)
            client.wake()


hub = LiveHub()

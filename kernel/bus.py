"""The live bus: small status messages for the dashboard, sent through the channel layer.

`publish()` never blocks and never raises: ingest and delivery must not slow down or
fail because nobody is watching or Redis is down. Messages are queued in-process and a
background task sends them to the group `relay.live` as
`{"type": "live.message", "message": ...}`, where `message` is one message, or under
load a batch `{"type": "batch", "items": [...]}`. When the queue is full, or the channel
layer cannot be reached, messages are shed and the next batch says how many
(`"dropped": n`): the live view is best-effort, PostgreSQL is the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from typing import Any

log = logging.getLogger("relay.bus")

LIVE_GROUP = "relay.live"
LAYER_MESSAGE_TYPE = "live.message"
QUEUE_LIMIT = 10_000
BATCH_LIMIT = 500
FLUSH_INTERVAL = 0.02
"""At most one send per this many seconds: a message after a quiet spell leaves at once,
under load the messages of the interval travel together as one batch. Short, because
the receiving web processes pace their clients' frames themselves (live.consumer): one
Redis PUBLISH per 20 ms costs the publisher little, and a longer wait here would add to
every message's way to the dashboard."""
SEND_TIMEOUT = 2.0
RETRY_INTERVAL = 1.0
"""After a failed send, wait this long before trying the channel layer again."""


def json_safe(message: dict[str, Any]) -> dict[str, Any]:
    """The message with anything JSON cannot carry (datetimes, decimals) turned into text."""
    safe: dict[str, Any] = json.loads(json.dumps(message, default=str))
    return safe


class LiveBus:
    def __init__(self, queue_limit: int = QUEUE_LIMIT) -> None:
        self._queue: deque[dict[str, Any]] = deque(maxlen=queue_limit)
        self._dropped = 0
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread_id: int | None = None
        self._stopping = False
        self.sent = 0
        """Messages handed to the channel layer (items of a batch counted one by one)."""
        self.dropped_total = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def publish(self, message: dict[str, Any]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._shed(1)
        self._queue.append(message)
        wakeup = self._wakeup
        if wakeup is None or wakeup.is_set():
            return
        if threading.get_ident() == self._thread_id:
            wakeup.set()
        elif self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(wakeup.set)

    def _shed(self, count: int) -> None:
        self._dropped += count
        self.dropped_total += count

    def take_batch(self) -> dict[str, Any] | None:
        """The next message to send: a single message, or a batch of several."""
        if not self._queue and not self._dropped:
            return None
        items = [self._queue.popleft() for _ in range(min(BATCH_LIMIT, len(self._queue)))]
        dropped, self._dropped = self._dropped, 0
        if len(items) == 1 and not dropped:
            return items[0]
        batch: dict[str, Any] = {"type": "batch", "items": items}
        if dropped:
            batch["dropped"] = dropped
        return batch

    async def _send(self, message: dict[str, Any]) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        envelope = {"type": LAYER_MESSAGE_TYPE, "message": message}
        try:
            await asyncio.wait_for(layer.group_send(LIVE_GROUP, envelope), SEND_TIMEOUT)
        except (TypeError, ValueError):
            # A publisher put something msgpack cannot carry (a datetime): send it as text.
            envelope["message"] = json_safe(message)
            await asyncio.wait_for(layer.group_send(LIVE_GROUP, envelope), SEND_TIMEOUT)
        self.sent += len(message["items"]) if message.get("type") == "batch" else 1

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._wakeup.set()
        failing_since_drop = 0
        failing = False
        last_flush = 0.0
        while not self._stopping:
            await self._wakeup.wait()
            wait = last_flush + FLUSH_INTERVAL - self._loop.time()
            if wait > 0 and not self._stopping:
                await asyncio.sleep(wait)
            last_flush = self._loop.time()
            self._wakeup.clear()
            while (message := self.take_batch()) is not None:
                try:
                    await self._send(message)
                except Exception as exc:  # noqa: BLE001 - the bus must never break its callers
                    count = len(message["items"]) if message.get("type") == "batch" else 1
                    self._shed(count)
                    if not failing:
                        log.warning("live bus: the channel layer is unavailable (%s: %s); live "
                                    "messages are dropped until it is back", type(exc).__name__, exc)
                        failing, failing_since_drop = True, self.dropped_total - count
                    if self._stopping:
                        return
                    await asyncio.sleep(RETRY_INTERVAL)
                    self._wakeup.set()
                    break
                if failing:
                    log.info("live bus: the channel layer is reachable again (%d messages dropped "
                             "meanwhile)", self.dropped_total - failing_since_drop)
                    failing = False

    def start(self) -> None:
        """Start the sender in the running event loop (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="relay-live-bus")

    async def stop(self) -> None:
        """Stop the sender; messages still queued are sent first if the layer answers quickly."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), SEND_TIMEOUT + 1)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception:  # noqa: BLE001 - a sender that does not finish in time is cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        finally:
            self._stopping = False
            self._wakeup = None
            self._loop = None
            self._thread_id = None


bus = LiveBus()


def publish(message: dict[str, Any]) -> None:
    """Queue a live message for the dashboard. Never blocks, never raises."""
    try:
        bus.publish(message)
    except Exception:  # a live view must never break ingest or delivery
        log.debug("live bus: publish failed", exc_info=True)

"""The live bus: small status messages for the dashboard, sent through the channel layer.

`publish()` never blocks and never raises: ingest and delivery must not slow down or
fail because nobody is watching or Redis is down. Messages are queued in-process and a
background task sends them in batches (`{"type": "batch", "items": [...]}`); when the
queue is full the oldest are shed and the next batch says how many (`dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

log = logging.getLogger("relay.bus")

LIVE_GROUP = "relay.live"
QUEUE_LIMIT = 10_000
BATCH_LIMIT = 500
FLUSH_INTERVAL = 0.05


class LiveBus:
    def __init__(self, queue_limit: int = QUEUE_LIMIT) -> None:
        self._queue: deque[dict[str, Any]] = deque(maxlen=queue_limit)
        self._dropped = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def publish(self, message: dict[str, Any]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1
        self._queue.append(message)
        if self._wakeup is not None:
            self._wakeup.set()

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

    async def run(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        self._wakeup = asyncio.Event()
        failing = False
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(FLUSH_INTERVAL)
            while (message := self.take_batch()) is not None:
                try:
                    await layer.group_send(LIVE_GROUP, {"type": "live.message", "message": message})
                    if failing:
                        log.info("live bus: channel layer reachable again")
                        failing = False
                except Exception as exc:  # noqa: BLE001 - the bus must never break callers
                    if not failing:
                        log.warning("live bus: channel layer unavailable (%s); live view paused", exc)
                        failing = True
                    self._dropped += len(message.get("items", [message]))
                    break

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="relay-live-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


bus = LiveBus()


def publish(message: dict[str, Any]) -> None:
    bus.publish(message)

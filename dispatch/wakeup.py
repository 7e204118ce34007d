"""Wake-ups from PostgreSQL `NOTIFY`, on a dedicated connection.

A listener registered on a pooled connection is lost when the connection goes back to
the pool, so this opens its own with `asyncpg.connect()`, pings it now and then (a dead
TCP connection is otherwise only noticed when something is sent), and reconnects with
backoff when it drops. Every (re)connect counts as a wake-up of every channel, because
notifications sent while it was away are gone; the dispatcher's slow poll covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

log = logging.getLogger("relay.dispatch")

PING_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 10.0
APPLICATION_NAME = "relay-dispatch-listen"
"""Shown in pg_stat_activity for the LISTEN connections."""


class Listener:
    def __init__(self, params: dict[str, Any], channels: dict[str, Callable[[], None]]) -> None:
        self.params = params
        self.channels = channels
        self.connected = asyncio.Event()

    def _wake_all(self) -> None:
        for wake in self.channels.values():
            wake()

    def _on_notify(self, connection: object, pid: int, channel: str, payload: str) -> None:
        wake = self.channels.get(channel)
        if wake is not None:
            wake()

    async def run(self) -> None:
        backoff = 0.2
        warned = False
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                if self.connected.is_set():
                    self.connected.clear()
                    backoff, warned = 0.2, False
                if not warned:
                    log.warning("dispatcher: no LISTEN connection (%s); polling until it is "
                                "back", exc)
                    warned = True
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)

    async def _session(self) -> None:
        """One LISTEN connection, until it breaks (raises)."""
        connection = await asyncpg.connect(
            **self.params, timeout=10,
            server_settings={"application_name": APPLICATION_NAME})
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _: lost.set())
            for channel in self.channels:
                await connection.add_listener(channel, self._on_notify)
            self.connected.set()
            log.info("dispatcher: listening for work on %s", ", ".join(self.channels))
            self._wake_all()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=PING_SECONDS)
            raise ConnectionError("the server closed the connection")
        finally:
            connection.terminate()

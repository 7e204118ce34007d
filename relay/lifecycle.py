"""What starts and stops with a Relay web process: the database, the live bus, and
whatever else registers here."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from relay.bus import bus
from relay.database import start_database, stop_database, wait_for_database

log = logging.getLogger("relay")

Hook = Callable[[], Awaitable[None]]
_startup_hooks: list[Hook] = []
_shutdown_hooks: list[Hook] = []


def on_startup(hook: Hook) -> None:
    _startup_hooks.append(hook)


def on_shutdown(hook: Hook) -> None:
    _shutdown_hooks.append(hook)


async def startup() -> None:
    await wait_for_database()
    await start_database()
    bus.start()
    for hook in _startup_hooks:
        await hook()


async def shutdown() -> None:
    for hook in reversed(_shutdown_hooks):
        try:
            await hook()
        except Exception:
            log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
    await bus.stop()
    await stop_database()

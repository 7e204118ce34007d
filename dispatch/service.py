"""Running a dispatcher: inside the web process (runrelay) or on its own (`dispatch`)."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel import lifecycle

if TYPE_CHECKING:
    from dispatch.worker import Dispatcher

_running: list[Dispatcher] = []

BesideJob = Callable[[], "asyncio.Task[None]"]
_beside: list[BesideJob] = []


def run_beside_dispatchers(job: BesideJob) -> None:
    """Have every dispatcher start `job` (a function that starts a task) when it starts,
    and cancel the task when it stops. The wiring registers the daily retention purge."""
    if job not in _beside:
        _beside.append(job)


def beside_jobs() -> tuple[BesideJob, ...]:
    return tuple(_beside)


def run_dispatcher_in_web_process() -> None:
    """Register the dispatcher to start and stop with the web process's lifespan."""

    async def start() -> None:
        from dispatch.worker import Dispatcher

        dispatcher = Dispatcher()
        await dispatcher.start()
        _running.append(dispatcher)

    async def stop() -> None:
        while _running:
            await _running.pop().stop()

    lifecycle.on_startup(start)
    lifecycle.on_shutdown(stop)


GC_THRESHOLDS = (50_000, 20, 20)


def quiet_garbage_collector() -> None:
    """For a long-running dispatcher process, once started: freeze everything loaded so far
    (Django, the modules, the caches) out of the collector's way and collect young objects
    less often. With Python's defaults a busy dispatcher spent a good part of its CPU in
    collections that mostly walked those startup objects again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (a second SIGINT still interrupts)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def interrupt() -> None:
        if stop.is_set():
            loop.remove_signal_handler(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        stop.set()

    loop.add_signal_handler(signal.SIGINT, interrupt)

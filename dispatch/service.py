"""Running a dispatcher process (`dispatch`, also as started by `runrelay`)."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

PooledConnection = Callable[[], AbstractAsyncContextManager[Any]]
BesideJob = Callable[[PooledConnection], "asyncio.Task[None]"]
_beside: list[BesideJob] = []


def run_beside_dispatchers(job: BesideJob) -> None:
    """Have every dispatcher start `job` when it starts (a function that takes the
    dispatcher's pooled-connection factory and starts a task), and cancel the task when it
    stops. The wiring registers the daily retention purge and the partition upkeep."""
    if job not in _beside:
        _beside.append(job)


def beside_jobs() -> tuple[BesideJob, ...]:
    return tuple(_beside)


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

"""Running a dispatcher process (`dispatch`, also as started by `runrelay`)."""

from __future__ import annotations

import asyncio
import gc
import signal

GC_THRESHOLDS = (50_000, 20, 20)


def quiet_garbage_collector() -> None:
    """For a long-running dispatcher process, once started: freeze everything loaded so far
    (Django, the modules, the caches) out of the collector's way and collect young objects
    less often. With Python's defaults a busy dispatcher spent about a seventh of its CPU
    in collections that mostly walked those startup objects again and again."""
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

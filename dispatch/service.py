"""How the dispatcher is started inside another process (runrelay's web process)."""

from __future__ import annotations


def run_dispatcher_in_web_process() -> None:
    """Register the dispatcher to start and stop with the web process's lifespan.

    Placeholder until the dispatcher lands: nothing to run yet.
    """

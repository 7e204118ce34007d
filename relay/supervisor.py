"""Supervising `runrelay`'s processes: web workers and dispatchers as child processes.

One SIGINT (Ctrl-C) or SIGTERM to the supervisor stops every child with SIGTERM and waits
for them (each finishes or hands back its work within its own grace period); a child still
running after `grace` seconds is killed. A child that exits by itself is started again
with a log line, unless children crashed `CrashBudget.limit` times within
`CrashBudget.window` seconds: then everything stops with a message saying so, since a
process that keeps crashing (a bad setting, the port, the database) will not be fixed by
restarting it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

POLL_INTERVAL = 0.1


def exit_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent (the supervisor) dies, so that a
    supervisor killed with SIGKILL leaves no worker behind. A no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class CrashBudget:
    """At most `limit` crashes within any `window` seconds."""

    limit: int = 5
    window: float = 60.0
    _times: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> bool:
        """Count one crash at `now`; True when that makes `limit` within `window`."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) >= self.limit


@dataclass
class ChildSpec:
    name: str
    """What the log lines call it: `web worker 1`, `dispatcher 2`."""
    argv: list[str]
    pass_fds: tuple[int, ...] = ()


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, specs: Sequence[ChildSpec], *, env: Mapping[str, str],
                 say: Callable[[str], None], grace: float,
                 budget: CrashBudget | None = None) -> None:
        self.specs = list(specs)
        self.env = dict(env)
        self.say = say
        self.grace = grace
        self.budget = budget or CrashBudget()
        self.children: list[Child] = []
        self.stop_requested = False
        self.signals = 0

    def _spawn(self, spec: ChildSpec) -> Child:
        process = subprocess.Popen(spec.argv, env=self.env, pass_fds=spec.pass_fds,
                                   start_new_session=True)
        return Child(spec, process)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.stop_requested = True
        if self.signals > 1:
            self.say("Second signal: killing the processes now.")
            for child in self.children:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()

    def run(self) -> int:
        """Start every child and supervise them until a signal or too many crashes; then
        stop them all. Returns the exit code for the supervisor (0: stopped on request)."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.children = [self._spawn(spec) for spec in self.specs]
            code = self._watch()
            self.stop()
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self) -> int:
        while not self.stop_requested:
            time.sleep(POLL_INTERVAL)
            for index, child in enumerate(self.children):
                code = child.process.poll()
                if code is None or self.stop_requested:
                    continue
                how = describe_exit(code)
                if self.budget.crashed(time.monotonic()):
                    self.say(f"{child.spec.name} (pid {child.process.pid}) {how}. Processes "
                             f"crashed {self.budget.limit} times within "
                             f"{self.budget.window:g} s: stopping Relay; see the messages "
                             "above for the cause.")
                    return 1
                self.children[index] = self._spawn(child.spec)
                self.say(f"{child.spec.name} (pid {child.process.pid}) {how}; restarted it "
                         f"as pid {self.children[index].process.pid}.")
        return 0

    def stop(self) -> None:
        """SIGTERM every child, wait up to `grace` seconds, kill the ones left."""
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.spec.name} (pid {child.process.pid}) did not stop within "
                         f"{self.grace:g} s: killed it.")
                child.process.kill()
                child.process.wait()


def child_environment(base: Mapping[str, str], **overrides: str) -> dict[str, str]:
    env = {**base, **overrides}
    env.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
    env["PYTHONUNBUFFERED"] = "1"
    return env

"""Fixtures for the `relay` CLI's tests: the installed console script run as a subprocess
against the Relay served by `relay_server`, and real loopback handlers (`Sink`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.dispatch.conftest import Sink, dispatcher, sink, start_dispatcher  # noqa: F401
from tests.live.conftest import live_bus  # noqa: F401
from tests.servers import wait_until

RELAY = str(Path(sys.executable).parent / "relay")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli_env(tmp_path, relay_server, admin_token) -> dict[str, str]:
    """The environment of a logged-in user (RELAY_URL / RELAY_TOKEN) with its own config
    directory."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RELAY_", "DJANGO_"))}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), RELAY_URL=relay_server,
               RELAY_TOKEN=admin_token, NO_COLOR="1")
    return env


@pytest.fixture
def run_cli(cli_env):
    """`await run_cli("events", "--json")`: run the CLI to completion (the server shares
    this event loop, so never a blocking subprocess call)."""

    async def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Result:
        process = await asyncio.create_subprocess_exec(
            RELAY, *args, env=env or cli_env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return Result(process.returncode, stdout.decode(), stderr.decode())

    return run


@dataclass
class Background:
    """A long-running CLI command (`listen`, `tail`) whose output is collected line by line."""

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task] = field(default_factory=list)

    def start_reading(self) -> None:
        loop = asyncio.get_running_loop()
        self._readers = [loop.create_task(self._read(self.process.stdout, self.stdout)),
                         loop.create_task(self._read(self.process.stderr, self.stderr))]

    @staticmethod
    async def _read(stream, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode().rstrip("\n"))

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout if line.startswith("{")]

    async def wait_for_stderr(self, text: str, timeout: float = 15) -> None:
        await wait_until(lambda: any(text in line for line in self.stderr) or
                         self.process.returncode is not None,
                         timeout=timeout, message=f"{text!r} on stderr")
        assert any(text in line for line in self.stderr), self.stderr

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.process.wait(), 15)
        await asyncio.gather(*self._readers)
        return code


@pytest.fixture
async def start_cli(cli_env):
    """`await start_cli("listen", ...)`: a CLI process running in the background, stopped
    (Ctrl-C) at the end of the test."""
    started: list[Background] = []

    async def start(*args: str) -> Background:
        process = await asyncio.create_subprocess_exec(
            RELAY, *args, env=cli_env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        background = Background(process)
        background.start_reading()
        started.append(background)
        return background

    yield start
    for background in started:
        await background.stop()


def secret_of(background: Background) -> str:
    for line in background.stderr:
        if "Signing secret" in line:
            return line.rsplit(" ", 1)[-1]
    raise AssertionError(f"no signing secret printed: {background.stderr}")

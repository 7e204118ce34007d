"""Fixtures for the operations tests: Relay (and Redis) as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = "/usr/bin/redis-server"


def relay_env(**overrides: str) -> dict[str, str]:
    """This test session's environment (its database, secret key...) plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update({"DJANGO_SETTINGS_MODULE": "relay.settings", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


class Process:
    """A command in its own process group, its output in a file; stopped with SIGTERM."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.log_path = Path(tempfile.mkstemp(prefix=f"relay-ops-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open for the process's life
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, url: str, timeout: float = 60.0, status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n"
                                     f"{self.output()[-3000:]}")
            try:
                answer = httpx.get(url, timeout=2)
                if answer.status_code == status:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {url} not {status} within {timeout} s ({last})\n"
                             f"{self.output()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


def uvicorn_command(port: int, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "relay.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--http", "httptools",
            "--loop", "uvloop", "--no-access-log", "--lifespan", "on"]


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of our own on a free 127.0.0.1 port, no persistence."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"{REDIS_SERVER} is not installed (apt-get install redis-server)")
    port = free_port()
    server = Process("redis", [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port),
                               "--save", "", "--appendonly", "no"], os.environ.copy())
    deadline = time.monotonic() + 10
    import socket

    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"redis-server did not start:\n{server.output()}")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


@pytest.fixture(scope="session")
def json_relay(database):
    """Relay under uvicorn in its own process, JSON logs, on the test database."""
    port = free_port()
    server = Process("web-json", uvicorn_command(port), relay_env(
        RELAY_LOG_FORMAT="json", RELAY_LOG_LEVEL="INFO", RELAY_SOURCE_CACHE_SECONDS="0.1"))
    base = f"http://127.0.0.1:{port}"
    server.wait_http(f"{base}/readyz")
    server.base = base  # type: ignore[attr-defined]
    yield server
    server.stop()


async def run(command: list[str], env: dict[str, str], timeout: float = 120
              ) -> tuple[int, str, str]:
    """Run a command to its end without blocking the event loop (Relay may be serving in it)."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

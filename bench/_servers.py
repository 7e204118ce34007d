"""Processes a benchmark needs: a throwaway PostgreSQL, uvicorn servers, the load generator.

Everything listens on 127.0.0.1 and is stopped when the benchmark ends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import PgCluster, free_port  # noqa: E402

__all__ = ["PYTHON", "ROOT", "BenchError", "PgCluster", "free_port", "Postgres", "Server",
           "run_loadgen", "http_json", "wait_for_port", "manage",
           "migrated_with_token"]


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


class Postgres:
    """A throwaway PostgreSQL 16 cluster (fsync and synchronous_commit on) and one database."""

    def __init__(self, database: str = "relay_bench") -> None:
        self.cluster = PgCluster(free_port())
        self.database = database
        self.url = f"postgresql://postgres@127.0.0.1:{self.cluster.port}/{database}"
        self.statements = bool(os.environ.get("RELAY_BENCH_PG_STATEMENTS"))
        """Load pg_stat_statements (binaries that ship it: RELAY_TEST_PG_BIN)."""

    def start(self) -> None:
        self.cluster.init()
        if self.statements:
            with open(self.cluster.pgdata / "postgresql.conf", "a") as conf:
                conf.write("shared_preload_libraries = 'pg_stat_statements'\n"
                           "pg_stat_statements.track_planning = on\n")
        self.cluster.start()
        self.psql(f"CREATE DATABASE {self.database}", database="postgres")
        if self.statements:
            self.psql("CREATE EXTENSION pg_stat_statements")
        settings = self.psql("SHOW fsync; SHOW synchronous_commit").split()
        if settings != ["on", "on"]:
            raise BenchError(f"PostgreSQL must run with fsync and synchronous_commit on, not {settings}")

    def psql(self, sql: str, database: str | None = None) -> str:
        completed = self.cluster._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(self.cluster.port), "-U", "postgres", "-d", database or self.database,
            "-c", sql, check=False,
        )
        if completed.returncode != 0:
            raise BenchError(f"psql {sql!r} failed: {completed.stderr.strip()}")
        return completed.stdout.strip()

    def postmaster_pid(self) -> int:
        return int((self.cluster.pgdata / "postmaster.pid").read_text().split()[0])

    def destroy(self) -> None:
        self.cluster.destroy()


class Server:
    """An ASGI app under uvicorn (1 worker, uvloop, httptools, no access log) in its own process."""

    def __init__(self, name: str, app: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.app = app
        self.env = env
        self.port = free_port()
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        command = [
            PYTHON, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--lifespan", "on",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{self.name} did not start within {timeout:.0f} s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def manage(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{completed.stdout}{completed.stderr}")
    return completed.stdout


def migrated_with_token(env: dict[str, str], name: str = "bench") -> str:
    """Migrate the database `env` points at; returns a new admin token."""
    manage(env, "migrate")
    return manage(env, "createtoken", "--name", name).strip().splitlines()[-1]


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 60) -> None:
    """Until `process` listens on 127.0.0.1:`port`; BenchError when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def http_json(method: str, url: str, payload: Any = None, headers: dict[str, str] | None = None,
              body: bytes | None = None) -> tuple[int, Any]:
    """One request with the standard library (setup and checks, not load)."""
    data = body if body is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # a loopback URL
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def run_loadgen(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run bench/_loadgen.py in its own process; its progress lines go to our stderr."""
    spec_path = Path(tempfile.mkstemp(dir=workdir, suffix=".json")[1])
    spec_path.write_text(json.dumps(spec))
    completed = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "_loadgen.py"), "--spec", str(spec_path)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ},
        timeout=spec["warmup"] + spec["duration"] + 120,
    )
    if completed.returncode != 0:
        raise BenchError(f"the load generator failed (exit {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])

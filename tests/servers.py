"""Real servers for tests: a throwaway PostgreSQL cluster and a uvicorn running Relay.

The cluster uses the PostgreSQL binaries shipped in the `pgserver` wheel (no apt, no
Docker), listens on 127.0.0.1 only, and can be stopped and started again by a test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_bin() -> Path:
    """The `pgserver` wheel's binaries, or those of `RELAY_TEST_PG_BIN` (a directory holding
    initdb, pg_ctl and postgres: e.g. Debian's, which ship pg_stat_statements)."""
    if os.environ.get("RELAY_TEST_PG_BIN"):
        return Path(os.environ["RELAY_TEST_PG_BIN"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


class PgCluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="relay-test-pg-"))
        self.pgdata = self.root / "data"
        self.user: str | None = None
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(_postgres_bin() / args[0]), *args[1:]], check=check, capture_output=True,
            text=True, user=self.user, timeout=60,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver.utils import ensure_prefix_permissions, ensure_user_exists
            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(_postgres_bin())
            os.chmod(self.root, 0o777)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=utf8", "--no-sync")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\nmax_connections = 200\nfsync = on\nsynchronous_commit = on\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l",
                  str(self.root / "log"), "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root}",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def wait_until(condition, timeout: float = 10.0, interval: float = 0.02,
                     message: str = "condition") -> None:
    """Poll `condition` (sync or async) until true; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)

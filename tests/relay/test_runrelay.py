"""`manage.py runrelay` as a newcomer runs it: embedded PostgreSQL, first-start token,
commands beside it, a clean stop, and data that survives a restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("RELAY_") and key != "DJANGO_SETTINGS_MODULE"}
    env["RELAY_DATA_DIR"] = data_dir
    return env


def _manage(data_dir: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(data_dir),
                          capture_output=True, text=True, timeout=120)


class RunningRelay:
    def __init__(self, data_dir: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.log = Path(data_dir) / f"runrelay-{self.port}.log"
        self.out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runrelay", "--port", str(self.port), *args],
            cwd=ROOT, env={**_env(data_dir), **env}, stdout=self.out,
            stderr=subprocess.STDOUT, text=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"runrelay exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a subprocess's readiness with a deadline
        raise AssertionError(f"runrelay not ready in {timeout} s:\n{self.log.read_text()}")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.out.close()


def _postmaster_running(data_dir: str) -> bool:
    pid_file = Path(data_dir) / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runrelay_embedded_database_lifecycle():
    data_dir = tempfile.mkdtemp(prefix="relay-runrelay-")
    relay = RunningRelay(data_dir)
    try:
        relay.wait_ready()
        first_output = relay.output()
        token = re.search(r"(rly_[A-Za-z0-9_-]+)", first_output)
        assert token, first_output
        assert f"http://127.0.0.1:{relay.port}/dashboard/" in first_output
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        created = httpx.post(f"{relay.base}/api/v1/sources", headers=headers,
                             json={"slug": "kept", "verification": {"kind": "none"}})
        assert created.status_code == 201, created.text
        accepted = httpx.post(f"{relay.base}/in/kept", content=b'{"n": 1}')
        assert accepted.status_code == 202, accepted.text

        # A management command works against the same embedded database meanwhile.
        made = _manage(data_dir, "createtoken", "--name", "beside", "--scope", "viewer")
        assert made.returncode == 0, made.stderr
        viewer = made.stdout.strip().splitlines()[-1]
        assert viewer.startswith("rly_")
        listed = httpx.get(f"{relay.base}/api/v1/events", headers={"Authorization": f"Bearer {viewer}"})
        assert listed.status_code == 200 and len(listed.json()["data"]) == 1
    finally:
        code = relay.stop()
    assert code == 0, relay.output()
    assert "Relay stopped." in relay.output()
    assert not _postmaster_running(data_dir), "the embedded PostgreSQL outlived runrelay"

    again = RunningRelay(data_dir)
    try:
        again.wait_ready()
        assert "First start" not in again.output()
        events = httpx.get(f"{again.base}/api/v1/events", headers=headers)
        assert events.status_code == 200
        assert [event["source"] for event in events.json()["data"]] == ["kept"]
    finally:
        assert again.stop() == 0
    assert not _postmaster_running(data_dir)

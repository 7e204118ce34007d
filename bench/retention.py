"""Ingest throughput while retention removes a large expired backlog by dropping days.

    .venv/bin/python bench/retention.py [--events 10000000] [--days 30] [--rounds 3]
                                        [--duration 8] [--connections 32]
                                        [--reuse URL]

Starts a throwaway PostgreSQL (fsync and synchronous_commit on), migrates it and fills it
(bench/_scale_seed.py) with `--events` events spread over `--days` days ending two days
ago, one delivery and one attempt each, one delivery in a thousand still in flight. With
`--reuse URL` it uses a database already filled that way instead (its rows must end at
least two days ago). Relay runs under uvicorn (1 worker) on 127.0.0.1.

Windows alternate quiet, purging, purging, quiet (`--rounds` times). Each purging window
runs `manage.py purge --days N` (started and frozen before the window, so the window
does not pay for a process start) with N cut so that it drops the next slice of the
backlog's days, and measures signed 1 KB `POST /in/<slug>` at a fixed
concurrency while it runs; quiet windows run no purge. Prints ingest while purging /
ingest without purge (target ≥ 0.95), each purge's time, and the expired backlog before
and after (what stays is only what is still in flight, moved to the default partitions).
Checks every 2xx answer is a stored event and that no delivery still in flight was lost.
Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale_seed import seed
from _servers import PYTHON, ROOT, BenchError, Postgres, Server, migrated_with_token
from ingest import SIGNATURE_HEADER, SOURCE_SLUG, create_source, relay_env, webhook_body
from purge import measure, problems_of, report_windows

from tests.servers import _postgres_bin

TARGET_RATIO = 0.95
ACTIVE = "('pending', 'retrying', 'delivering')"


def say(line: str = "") -> None:
    print(line, flush=True)


class ExistingPostgres:
    """A database already running (`--reuse`), with the `Postgres` methods the bench uses."""

    def __init__(self, url: str) -> None:
        self.url = url

    def psql(self, sql: str) -> str:
        completed = subprocess.run(
            [str(_postgres_bin() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             self.url, "-c", sql], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise BenchError(f"psql {sql!r} failed: {completed.stderr.strip()}")
        return completed.stdout.strip()

    def postmaster_pid(self) -> int:
        data = self.psql("SHOW data_directory")
        return int((Path(data) / "postmaster.pid").read_text().split()[0])

    def destroy(self) -> None:
        pass


def start_frozen_purge(days: int, log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """`manage.py purge --days N` started, past Python's and Django's start-up (its first
    line printed), then frozen (SIGSTOP): a window measures the purge, not a process start,
    which the daily purge inside a dispatcher does not have."""
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it
    purge = subprocess.Popen([PYTHON, "manage.py", "purge", "--days", str(days)], cwd=ROOT,
                             env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while "Dropping whole days" not in log_path.read_text():
        if purge.poll() is not None or time.monotonic() > deadline:
            raise BenchError("the purge did not start:\n" + log_path.read_text()[-2000:])
        time.sleep(0.05)
    purge.send_signal(signal.SIGSTOP)
    return purge


def backlog(pg: Any, cutoff: datetime) -> tuple[int, int]:
    """(expired events, expired deliveries still in flight)."""
    row = pg.psql(
        f"SELECT (SELECT count(*) FROM event WHERE received_at < '{cutoff.isoformat()}'),"
        f" (SELECT count(*) FROM delivery d WHERE d.status IN {ACTIVE}"
        f"  AND d.created_at < '{cutoff.isoformat()}')")
    events, active = row.split("|")
    return int(events), int(active)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="expired events (10M)")
    parser.add_argument("--days", type=int, default=30, help="days the backlog spans (30)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured s per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s per window")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of four windows: quiet, purging, purging, quiet (3)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--reuse", metavar="URL", help="a database already filled")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-retention-"))
    pg: Any = ExistingPostgres(args.reuse) if args.reuse else Postgres()
    relay: Server | None = None
    problems: list[str] = []
    try:
        env_url = args.reuse or pg.url
        if not args.reuse:
            say("Starting PostgreSQL (fsync on, synchronous_commit on) ...")
            pg.start()
        env = relay_env(env_url, workdir / "relay-data", 10)
        token = migrated_with_token(env)
        if not args.reuse:
            asyncio.run(seed(pg.url, args.events, per_event=1, days=args.days,
                             end_days_ago=2, say=say))
        oldest = pg.psql("SELECT min(received_at) FROM event")
        newest = pg.psql("SELECT max(received_at) FROM event")
        say(f"Backlog: events received from {oldest} to {newest}")
        first_day = datetime.fromisoformat(oldest).astimezone(UTC).date()
        today = datetime.now(UTC).date()
        span = (today - first_day).days
        cutoff_final = datetime.now(UTC) - timedelta(days=1)
        before, active_before = backlog(pg, cutoff_final)
        say(f"  expired (older than 1 day): {before:,} events; {active_before:,} of their "
            "deliveries still in flight")

        relay = Server("relay", "relay.asgi:application", env, workdir)
        relay.start()
        secret = secrets.token_hex(32)
        if args.reuse:  # a source left by an earlier run
            pg.psql(f"DELETE FROM source WHERE slug = '{SOURCE_SLUG}'")
        create_source(relay, token, secret)
        body = webhook_body()
        headers = {"Content-Type": "application/json", "User-Agent": "relay-bench/1",
                   SIGNATURE_HEADER: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
        pg.psql("CHECKPOINT")

        order = ["quiet", "purging", "purging", "quiet"] * args.rounds
        slices = order.count("purging")
        keep_days = [span - round(span * (k + 1) / slices) for k in range(slices)]
        keep_days = [max(1, days) for days in keep_days]
        results: dict[str, list[dict[str, Any]]] = {"quiet": [], "purging": []}
        purges: list[tuple[int, float, str]] = []
        for number, phase in enumerate(order, 1):
            say(f"Window {number}/{len(order)}: {phase}")
            purge = None
            if phase == "purging":
                days = keep_days[len(purges)]
                purge = start_frozen_purge(days, workdir / f"purge{number}.log", env)
                started = time.monotonic()
                purge.send_signal(signal.SIGCONT)
            results[phase].append(
                measure(f"{phase}{number}", relay, pg, args, headers, body, workdir))
            if purge is not None:
                purge.wait(timeout=3600)
                took = time.monotonic() - started
                tail = (workdir / f"purge{number}.log").read_text().strip().splitlines()
                if purge.returncode != 0:
                    raise BenchError("the purge failed:\n" + "\n".join(tail[-20:]))
                purges.append((days, took, tail[-1] if tail else ""))
                say(f"  purge --days {days}: {took:.1f} s; {tail[-1] if tail else ''}")

        after, active_after = backlog(pg, cutoff_final)
        for result in results["quiet"] + results["purging"]:
            problems += problems_of(result)
        if active_after < active_before:
            problems.append(f"deliveries in flight went from {active_before:,} to "
                            f"{active_after:,}: the purge lost some")

        say()
        ratio = report_windows(
            results, f"Ingest with {before:,} expired events, {args.connections} connections, "
            f"{len(order)} windows of {args.duration:g} s, 1 uvicorn worker", TARGET_RATIO)
        if ratio < TARGET_RATIO:
            problems.append(f"MISSED target: ingest while purging / without {ratio:.2f} < "
                            f"{TARGET_RATIO}")
        total = sum(took for _, took, _ in purges)
        say(f"  purges: {len(purges)} runs, {total:.0f} s in all, {(before - after) / total:,.0f}"
            " expired events removed a second (process start included)")
        say(f"  expired backlog: {before:,} -> {after:,} events (what is left has a delivery "
            f"in flight: {active_before:,} -> {active_after:,} such deliveries)")
        if problems:
            for problem in problems:
                say(f"ERROR {problem}")
            return 1
        return 0
    except BenchError as error:
        say(f"ERROR {error}")
        return 1
    finally:
        if relay is not None:
            relay.stop()
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Soak: mixed traffic for a long time; nothing lost, nothing leaking.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 20] [--endpoints 10]

On 127.0.0.1 only: a throwaway PostgreSQL 16, a redis-server, Relay's web server
(uvicorn), two `manage.py dispatch` processes, and subscribers served from this process:
most endpoints answer 204, 10 % answer 500 (failing), one never answers (hanging, its
timeout 1 s). Webhooks are posted at a steady `--rate` per second; both dispatchers are
restarted (SIGTERM, then started again) at one third and two thirds of the run.

Every 10 s it samples each Relay process's RSS and open file descriptors and the number
of PostgreSQL connections. At the end it waits for the deliveries to settle and checks:

- every acknowledged webhook is an event with one delivery per endpoint;
- healthy endpoints: every delivery succeeded and the subscriber got that webhook-id;
- failing and hanging endpoints: no delivery succeeded; each one failed after its whole
  schedule, or is still inside it (retrying or pending, a circuit cool-down included);
- memory, descriptors and connections flat: the last third of the samples against the
  first (after warm-up).

Prints the figures and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import (
    PYTHON,
    ROOT,
    BenchError,
    Postgres,
    Server,
    free_port,
    migrated_with_token,
)
from ingest import relay_env

FAILING_SCHEDULE = [1, 2, 4]
HANGING_SCHEDULE = [1, 2]
HEALTHY_SCHEDULE = [1, 2, 4, 8]
SAMPLE_EVERY = 10.0
FD_NOISE = 64
CONNECTION_NOISE = 10
SOURCE = "soak"


def say(line: str = "") -> None:
    print(line, flush=True)


@dataclass
class Subscribers:
    """The endpoints' side, in this process: 204, 500, or no answer at all."""

    port: int = field(default_factory=free_port)
    received: set[tuple[str, str]] = field(default_factory=set)
    requests: int = 0

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            await request.read()
            kind, name = request.match_info["kind"], request.match_info["name"]
            if kind == "hang":
                await asyncio.sleep(3600)
            if kind == "fail":
                return web.Response(status=500, text="failing on purpose")
            self.received.add((request.headers.get("webhook-id", ""), name))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{kind}/{name}", handle)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()


class Dispatchers:
    def __init__(self, env: dict[str, str], workdir: Path, count: int = 2) -> None:
        self.env = env
        self.workdir = workdir
        self.count = count
        self.processes: list[subprocess.Popen] = []
        self.generation = 0

    def start(self) -> None:
        self.generation += 1
        for number in range(self.count):
            log = open(self.workdir / f"dispatch-{self.generation}-{number}.log", "wb")  # noqa: SIM115
            self.processes.append(subprocess.Popen(
                [PYTHON, "manage.py", "dispatch"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT))

    def alive(self) -> list[subprocess.Popen]:
        return [process for process in self.processes if process.poll() is None]

    def check(self) -> None:
        for process in self.processes:
            if process.returncode not in (None, 0, -signal.SIGTERM):
                raise BenchError(f"a dispatcher exited with {process.returncode}; logs in "
                                 f"{self.workdir}")

    async def stop(self) -> list[int]:
        for process in self.alive():
            process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            codes.append(process.returncode)
        self.processes = []
        return codes


async def api(http: httpx.AsyncClient, method: str, path: str, token: str,
              payload: dict | None = None) -> Any:
    answer = await http.request(method, path, json=payload,
                                headers={"Authorization": f"Bearer {token}"})
    if answer.status_code >= 300:
        raise BenchError(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer.json()


async def ingest(http: httpx.AsyncClient, rate: float, until: float, acked: list[str],
                 refused: list[int]) -> None:
    """Post at a steady rate (each request on its own task, so a slow answer does not
    slow the rate down) until `until` on the loop clock."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    next_at = loop.time()
    number = 0
    pending: set[asyncio.Task] = set()

    async def one(n: int) -> None:
        try:
            answer = await http.post(f"/in/{SOURCE}", json={"type": "soak.tick", "n": n})
        except httpx.HTTPError:
            refused.append(0)
            return
        if answer.status_code == 202:
            acked.append(answer.json()["id"])
        else:
            refused.append(answer.status_code)

    while next_at < until:
        task = asyncio.create_task(one(number))
        pending.add(task)
        task.add_done_callback(pending.discard)
        number += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    if pending:
        await asyncio.wait(pending)


@dataclass
class Sample:
    at: float
    rss_mb: dict[str, float]
    fds: dict[str, int]
    pg_connections: int


def sample_process(process: psutil.Process) -> tuple[float, int]:
    members = [process, *process.children(recursive=True)]
    return (sum(member.memory_info().rss for member in members) / 2**20,
            sum(member.num_fds() for member in members))


async def sampler(web_pid: int, dispatchers: Dispatchers, pg_url: str, samples: list[Sample],
                  started: float, stop: asyncio.Event) -> None:
    connection = await asyncpg.connect(pg_url)
    try:
        while not stop.is_set():
            rss: dict[str, float] = {}
            fds: dict[str, int] = {}
            targets = {"web": web_pid, **{f"dispatcher{n}/run{dispatchers.generation}": p.pid
                                          for n, p in enumerate(dispatchers.alive())}}
            for name, pid in targets.items():
                with contextlib.suppress(psutil.Error):
                    rss[name], fds[name] = sample_process(psutil.Process(pid))
            count = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()")
            samples.append(Sample(time.monotonic() - started, rss, fds, count))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
    finally:
        await connection.close()


async def settle(pg_url: str, healthy: set[str], deadline: float) -> None:
    """Wait until healthy endpoints have nothing left open (failing ones may still retry)."""
    connection = await asyncpg.connect(pg_url)
    try:
        while time.monotonic() < deadline:
            unrouted = await connection.fetchval(
                "SELECT count(*) FROM event_unrouted")
            open_healthy = await connection.fetchval(
                "SELECT count(*) FROM delivery WHERE endpoint_id = ANY($1::text[])"
                " AND status NOT IN ('succeeded', 'failed', 'cancelled')", list(healthy))
            if unrouted == 0 and open_healthy == 0:
                return
            say(f"  settling: {unrouted} events unrouted, {open_healthy} healthy deliveries open")
            await asyncio.sleep(5)
    finally:
        await connection.close()


async def verify(pg_url: str, acked: list[str], endpoints: dict[str, dict[str, Any]],
                 subscribers: Subscribers) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    connection = await asyncpg.connect(pg_url)
    try:
        stored = {row["id"] for row in await connection.fetch(
            "SELECT id FROM event WHERE id = ANY($1::text[])", acked)}
        if len(stored) != len(set(acked)):
            problems.append(f"{len(set(acked)) - len(stored)} acknowledged events are missing")
        rows = await connection.fetch(
            "SELECT event_id, endpoint_id, status, attempts_count FROM delivery"
            " WHERE event_id = ANY($1::text[])", acked)
    finally:
        await connection.close()
    by_pair = {(row["event_id"], row["endpoint_id"]): row for row in rows}
    if len(rows) != len(by_pair):
        problems.append(f"{len(rows) - len(by_pair)} duplicate (event, endpoint) deliveries")
    expected_pairs = len(set(acked)) * len(endpoints)
    if len(by_pair) != expected_pairs:
        problems.append(f"{len(by_pair)} deliveries for {expected_pairs} (event, endpoint) pairs")
    summary: dict[str, dict[str, int]] = {}
    for endpoint_id, info in endpoints.items():
        statuses: dict[str, int] = {}
        for event_id in set(acked):
            row = by_pair.get((event_id, endpoint_id))
            status = row["status"] if row else "missing"
            statuses[status] = statuses.get(status, 0) + 1
            if row is None:
                continue
            if info["kind"] == "ok":
                if status != "succeeded":
                    problems.append(f"{info['name']}: delivery of {event_id} is {status}")
                elif (event_id, info["name"]) not in subscribers.received:
                    problems.append(f"{info['name']}: {event_id} succeeded but never arrived")
            else:
                limit = len(info["schedule"]) + 1
                if status == "succeeded":
                    problems.append(f"{info['name']}: a delivery to a dead endpoint succeeded")
                elif status == "failed" and row["attempts_count"] != limit:
                    problems.append(f"{info['name']}: failed after {row['attempts_count']} "
                                    f"attempts, not {limit}")
                elif status in ("pending", "retrying", "delivering") and row["attempts_count"] >= limit:
                    problems.append(f"{info['name']}: still {status} after {row['attempts_count']}")
        summary[info["name"]] = statuses
    return summary, problems[:30]


def flatness(samples: list[Sample], warmup: float, end: float) -> tuple[list[str], list[str]]:
    """First vs last third of the samples taken under traffic, after `warmup` s.

    Descriptors move with the connections in flight (one per request to a subscriber),
    and the first third is also when the connection pool fills up to the concurrency the
    traffic needs (a bounded rise, measured at 46 → 124 in a dispatcher's first 10
    minutes, the same level in the restarted ones). So a descriptor leak is growth from
    the middle third to the last, well past the noise: a leak keeps growing, a pool stops.
    """
    kept = [s for s in samples if s.at <= end]
    if len([s for s in kept if s.at >= warmup]) < 6:
        return ["  (too few samples to judge flatness: run longer)"], []
    lines, problems = [], []
    # Each process on its own: a restarted dispatcher is a new process ("runN").
    names = sorted({name for s in kept for name in s.rss_mb})
    for name in names:
        own = [s for s in kept if name in s.rss_mb]
        born = own[0].at
        own = [s for s in own if s.at >= born + warmup]
        if len(own) < 3:
            continue
        third = max(1, len(own) // 3)
        first, middle, last = own[:third], own[third:-third] or own[:third], own[-third:]
        early = [s.rss_mb[name] for s in first]
        late = [s.rss_mb[name] for s in last]
        fd_early, fd_middle, fd_late = ([s.fds[name] for s in part]
                                        for part in (first, middle, last))
        growth = statistics.median(late) - statistics.median(early)
        lines.append(f"  {name:<18} RSS {statistics.median(early):6.1f} → "
                     f"{statistics.median(late):6.1f} MiB ({growth:+.1f}); open fds "
                     f"{max(fd_early)} → {max(fd_middle)} → {max(fd_late)}")
        if growth > max(30.0, 0.25 * statistics.median(early)):
            problems.append(f"{name}: RSS grew by {growth:.1f} MiB")
        if max(fd_late) > max(fd_middle) + FD_NOISE:
            problems.append(f"{name}: open fds still growing: {max(fd_early)} → "
                            f"{max(fd_middle)} → {max(fd_late)} over its thirds")
    under_load = [s for s in kept if s.at >= warmup]
    third = max(1, len(under_load) // 3)
    pg_early = [s.pg_connections for s in under_load[:third]]
    pg_late = [s.pg_connections for s in under_load[-third:]]
    lines.append(f"  PostgreSQL connections {min(pg_early)}–{max(pg_early)} → "
                 f"{min(pg_late)}–{max(pg_late)}")
    if max(pg_late) > max(pg_early) + CONNECTION_NOISE:
        problems.append(f"PostgreSQL connections grew from {max(pg_early)} to {max(pg_late)}")
    return lines, problems


async def soak(args: argparse.Namespace, workdir: Path, pg: Postgres, redis_url: str) -> int:
    env = relay_env(pg.url, workdir / "relay-data", 10)
    env.update({"RELAY_TARGET_ALLOWLIST": "127.0.0.1", "RELAY_REDIS_URL": redis_url,
                "RELAY_METRICS_DIR": str(workdir / "metrics"), "RELAY_LOG_LEVEL": "WARNING",
                "RELAY_DISPATCH_CONCURRENCY": "100"})
    token = migrated_with_token(env, "soak")
    relay = Server("web", "relay.asgi:application", env, workdir)
    relay.start()
    subscribers = Subscribers()
    await subscribers.start()
    dispatchers = Dispatchers(env, workdir)
    samples: list[Sample] = []
    stop_sampling = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=relay.base, timeout=30,
                                     limits=httpx.Limits(max_connections=50)) as http:
            await api(http, "POST", "/api/v1/sources", token, {"slug": SOURCE})
            endpoints: dict[str, dict[str, Any]] = {}
            failing = max(1, args.endpoints // 10)
            for number in range(args.endpoints):
                kind = "hang" if number == 0 else ("fail" if number <= failing else "ok")
                schedule = {"hang": HANGING_SCHEDULE, "fail": FAILING_SCHEDULE,
                            "ok": HEALTHY_SCHEDULE}[kind]
                name = f"{kind}{number}"
                created = await api(http, "POST", "/api/v1/endpoints", token, {
                    "url": f"http://127.0.0.1:{subscribers.port}/{kind}/{name}",
                    "retry_schedule": schedule, "timeout_seconds": 1.0 if kind == "hang" else 10,
                    "max_in_flight": 50, "description": f"soak {kind}"})
                endpoints[created["id"]] = {"kind": kind, "name": name, "schedule": schedule}
            say(f"{len(endpoints)} endpoints: {args.endpoints - failing - 1} healthy, "
                f"{failing} failing (500), 1 hanging")

            dispatchers.start()
            started = time.monotonic()
            sampling = asyncio.create_task(sampler(relay.process.pid, dispatchers, pg.url,
                                                   samples, started, stop_sampling))
            duration = args.minutes * 60
            loop = asyncio.get_running_loop()
            acked: list[str] = []
            refused: list[int] = []
            say(f"Posting {args.rate:g} webhooks/s for {args.minutes:g} min; dispatchers restart "
                f"at {duration / 3:.0f} s and {2 * duration / 3:.0f} s ...")
            traffic = asyncio.create_task(ingest(http, args.rate, loop.time() + duration,
                                                 acked, refused))
            restarts = 0
            for fraction in (1 / 3, 2 / 3):
                while time.monotonic() - started < duration * fraction:
                    await asyncio.sleep(1)
                    dispatchers.check()
                    relay.check_alive()
                    if int(time.monotonic() - started) % 30 == 0:
                        say(f"  t={time.monotonic() - started:5.0f}s acked {len(acked):,}, "
                            f"refused {len(refused)}, subscriber requests "
                            f"{subscribers.requests:,}")
                codes = await dispatchers.stop()
                dispatchers.start()
                restarts += 1
                say(f"  t={time.monotonic() - started:5.0f}s restarted the dispatchers "
                    f"(exit codes {codes})")
            while not traffic.done():
                await asyncio.sleep(1)
                dispatchers.check()
            await traffic
            traffic_end = time.monotonic() - started
            say(f"Traffic done: {len(acked):,} acknowledged, {len(refused)} refused. Settling ...")
            healthy = {eid for eid, info in endpoints.items() if info["kind"] == "ok"}
            await settle(pg.url, healthy, time.monotonic() + args.settle)
            stop_sampling.set()
            await sampling
            summary, problems = await verify(pg.url, acked, endpoints, subscribers)
            lines, leaks = flatness(samples, warmup=min(30.0, duration / 12), end=traffic_end)
            codes = await dispatchers.stop()
    finally:
        stop_sampling.set()
        await dispatchers.stop()
        await subscribers.stop()
        relay.stop()

    if refused:
        problems.append(f"{len(refused)} webhooks were not acknowledged: "
                        f"{sorted(set(refused))[:10]}")
    if any(code not in (0,) for code in codes):
        problems.append(f"dispatchers exited with {codes} on SIGTERM")
    say()
    say(f"Soak: {args.minutes:g} min at {args.rate:g} webhooks/s, {len(endpoints)} endpoints, "
        f"dispatchers restarted {restarts} times")
    say(f"  acknowledged {len(acked):,} webhooks; deliveries by endpoint:")
    for name, statuses in sorted(summary.items()):
        say(f"    {name:<8} {json.dumps(statuses, sort_keys=True)}")
    say("  resources under traffic, per process (RSS: first third of its life after warm-up → "
        "last third; open fds: first → middle → last third):")
    for line in lines:
        say(line)
    problems += leaks
    for problem in problems:
        say(f"ERROR {problem}")
    if not problems:
        say("  every acknowledged webhook accounted for; no growth in memory, fds or connections")
    return 1 if problems else 0


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return process, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic duration (30)")
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks per second (20)")
    parser.add_argument("--endpoints", type=int, default=10, help="endpoints (10)")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="seconds to wait for healthy deliveries to finish (300)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    pg = Postgres()
    redis = None
    try:
        say("Starting PostgreSQL and Redis on 127.0.0.1 ...")
        pg.start()
        redis, redis_url = start_redis(workdir)
        return asyncio.run(soak(args, workdir, pg, redis_url))
    except BenchError as error:
        say(f"ERROR {error}")
        return 1
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait()
        pg.destroy()
        if os.environ.get("RELAY_SOAK_KEEP"):
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

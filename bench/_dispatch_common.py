"""What the dispatcher benchmarks share: a throwaway stack on 127.0.0.1 (PostgreSQL with
Relay's schema, the nginx sink), `manage.py dispatch` processes, seeding due deliveries in
SQL, reading the timings back from the attempt records, and the command-line plumbing
(common options, errors, the verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import (
    PYTHON,
    ROOT,
    BenchError,
    Postgres,
    Server,
    free_port,
    http_json,
    migrated_with_token,
    wait_for_port,
)
from ingest import relay_env

__all__ = [
    "drain", "starved", "reset_tables", "start_profiler", "postgres_cpu_seconds", "connect",
    "PYTHON", "ROOT", "BenchError", "Server", "free_port", "http_json", "Stack", "Nginx",
    "Dispatcher", "say", "load_average", "percentile", "median", "seed_events",
    "seed_deliveries", "wait_for", "BODY_JSON", "seed_due", "bench_main", "verdict",
    "ratio_line",
]

BODY_JSON = json.dumps({"type": "bench.dispatch", "pad": "x" * 990}, separators=(",", ":"))
"""The 1 KB body every benchmark sends (the raw client baselines send the same bytes)."""


def say(line: str = "") -> None:
    print(line, flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- nginx: the fast subscriber ----------------------------------------------------------------

NGINX_CONFIG = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location /fail {{ return 500; }}
        location / {{ return 204; }}
    }}
}}
"""


class Nginx:
    """Our own nginx (temp config, 1 worker, keep-alive, no access log): the subscriber that
    costs almost nothing. `/…` answers 204, `/fail` 500."""

    def __init__(self) -> None:
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(self.binary).exists():
            raise BenchError("nginx is not installed (apt-get install nginx-light)")
        self.root = Path(tempfile.mkdtemp(prefix="relay-bench-nginx-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        config = self.root / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(root=self.root, port=self.port))
        self.process = subprocess.Popen([self.binary, "-c", str(config), "-p", str(self.root)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process, "nginx", 10)

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        return [self.process.pid, *(child.pid for child in
                                    psutil.Process(self.process.pid).children(recursive=True))]

    def cpu_seconds(self) -> float:
        return processes_cpu_seconds(self.pids())

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def stop_process(process: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds: only the process we started."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """A throwaway PostgreSQL 16 (fsync on) with Relay's schema migrated, an admin token,
    the environment a Relay process needs to use it, and (`sink=True`) the nginx sink.
    `close()` stops and removes everything."""

    def __init__(self, name: str, *, concurrency: int, pool_size: int = 10,
                 extra_env: dict[str, str] | None = None, sink: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"relay-bench-{name}-"))
        self.pg = Postgres()
        self.sink = Nginx() if sink else None
        self.env = relay_env(self.pg.url, self.workdir / "relay-data", pool_size)
        self.env.update({
            "RELAY_TARGET_ALLOWLIST": "127.0.0.1",
            "RELAY_DISPATCH_CONCURRENCY": str(concurrency),
            "RELAY_METRICS_DIR": str(self.workdir / "metrics"),
            "RELAY_SHUTDOWN_GRACE": "2",
            **(extra_env or {}),
        })
        # Logged as the default install logs (bench.ingest's servers log less).
        for name in ("RELAY_LOG_LEVEL", "RELAY_REQUEST_LOG"):
            if name not in (extra_env or {}):
                self.env.pop(name, None)
        self.token = ""
        self._servers: list[Server] = []
        self._dispatchers: list[Dispatcher] = []

    @property
    def url(self) -> str:
        return self.pg.url

    def start(self) -> None:
        say("Starting PostgreSQL 16 (fsync on, synchronous_commit on) on 127.0.0.1 ...")
        self.pg.start()
        say("Migrating Relay's schema ...")
        self.token = migrated_with_token(self.env)
        if self.sink is not None:
            self.sink.start()

    def web(self, name: str = "web") -> Server:
        server = Server(name, "relay.asgi:application", self.env, self.workdir)
        self._servers.append(server)
        server.start()
        return server

    def create_endpoints(self, payloads: list[dict[str, Any]],
                         web: Server | None = None) -> list[str]:
        """Through the API, as an integrator would (a short-lived web process if none runs)."""
        own = web is None
        server = web or self.web("web-setup")
        try:
            ids = []
            for payload in payloads:
                status, answer = http_json("POST", f"{server.base}/api/v1/endpoints", payload,
                                           headers={"Authorization": f"Bearer {self.token}"})
                if status != 201:
                    raise BenchError(f"creating an endpoint failed: {status} {answer}")
                ids.append(answer["id"])
            return ids
        finally:
            if own:
                server.stop()

    def dispatcher(self, name: str = "dispatch", env: dict[str, str] | None = None) -> Dispatcher:
        return self.dispatchers([name], env)[0]

    def dispatchers(self, names: Sequence[str],
                    env: dict[str, str] | None = None) -> list[Dispatcher]:
        """Start them all at once, then wait until each says it dispatches."""
        started = [Dispatcher(name, {**self.env, **(env or {})}, self.workdir)
                   for name in names]
        self._dispatchers.extend(started)
        for process in started:
            process.launch()
        for process in started:
            process.wait_started()
        return started

    def runrelay(self, name: str = "runrelay", env: dict[str, str] | None = None) -> Runrelay:
        """The default `runrelay` (web workers and dispatchers) on this stack's database."""
        relay = Runrelay(name, {**self.env, **(env or {})}, self.workdir)
        self._dispatchers.append(relay)
        relay.start()
        return relay

    def close(self) -> None:
        for process in self._dispatchers:
            process.stop()
        for server in self._servers:
            server.stop()
        if self.sink is not None:
            self.sink.stop()
        self.pg.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Dispatcher:
    """`python manage.py dispatch` in its own process; started when it says it dispatches."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.rss_samples: list[int] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.wait_started(timeout)

    def launch(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen([PYTHON, "manage.py", "dispatch"], cwd=ROOT,
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_started(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if b"Dispatching as" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not start within {timeout:.0f} s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}\n"
                             f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss(self) -> int:
        """Resident set size in bytes (sampled into `rss_samples`)."""
        value = psutil.Process(self.pid).memory_info().rss
        self.rss_samples.append(value)
        return value

    def schedstat(self) -> tuple[float, float]:
        """(seconds on a CPU, seconds runnable but waiting for a CPU) of its main thread:
        the second is what the machine's other load costs it."""
        try:
            fields = Path(f"/proc/{self.pid}/schedstat").read_text().split()
            return int(fields[0]) / 1e9, int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0, 0.0

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        stop_process(self.process)


RUNRELAY_ARGS: list[str] = []
"""Extra `runrelay` options (`--web-workers`, `--dispatchers`), from bench_main's options;
none by default: what `make run` starts."""


class Runrelay(Dispatcher):
    """`python manage.py runrelay` as `make run` starts it (default web workers and
    dispatchers, supervised), against the stack's PostgreSQL; started when every dispatcher
    says it dispatches. CPU, schedstat and RSS are those of its children."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        super().__init__(name, env, logs)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        self.launch()
        self.wait_started(timeout)

    def launch(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(
            [PYTHON, "manage.py", "runrelay", "--port", str(self.port), *RUNRELAY_ARGS],
            cwd=ROOT,
            env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_started(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            text = self.log_path.read_text(errors="replace")
            banner = re.search(r"(\d+) web worker\(s\), (\d+) dispatcher\(s\)", text)
            if banner and text.count("dispatching as") >= int(banner.group(2)):
                self.workers = int(banner.group(1)), int(banner.group(2))
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not start within {timeout:.0f} s\n{self.log_tail()}")

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def rss(self) -> int:
        sizes = []
        for child in self._children():
            with contextlib.suppress(psutil.Error):
                sizes.append(child.memory_info().rss)
        value = max(sizes, default=0)
        self.rss_samples.append(value)
        return value

    def schedstat(self) -> tuple[float, float]:
        running = waiting = 0.0
        for child in self._children():
            try:
                fields = Path(f"/proc/{child.pid}/schedstat").read_text().split()
                running += int(fields[0]) / 1e9
                waiting += int(fields[1]) / 1e9
            except (OSError, IndexError, ValueError):
                pass
        return running, waiting

    def cpu_seconds(self) -> float:
        return processes_cpu_seconds([self.pid])


def processes_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU used so far by these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in members:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    return total


def postgres_cpu_by_kind(stack: Stack) -> dict[str, float]:
    """CPU used so far by the postmaster's children, by kind (client backends together,
    autovacuum workers together, walwriter, checkpointer, ...)."""
    kinds: dict[str, float] = {}
    try:
        children = psutil.Process(stack.pg.postmaster_pid()).children()
    except psutil.Error:
        return kinds
    for child in children:
        try:
            title = " ".join(child.cmdline())
            times = child.cpu_times()
        except psutil.Error:
            continue
        kind = title.removeprefix("postgres: ").split(" ")[0] if "postgres: " in title else title
        if " postgres " in title or "relay_bench" in title:
            kind = "backends"
        kinds[kind] = kinds.get(kind, 0.0) + times.user + times.system
    return kinds


def statements_reset(stack: Stack) -> None:
    """Forget what pg_stat_statements counted so far (no-op without it)."""
    if stack.pg.statements:
        stack.pg.psql("SELECT pg_stat_statements_reset()")


def statements_report(stack: Stack, per: int, top: int = 15) -> None:
    """The statements that took the most time since the last reset, per item of `per`:
    calls, rows, planning and execution µs (with RELAY_BENCH_PG_STATEMENTS=1)."""
    if not stack.pg.statements:
        return
    rows = stack.pg.psql(f"""
        SELECT calls, rows, round((total_plan_time * 1000 / {per})::numeric, 1),
               round((total_exec_time * 1000 / {per})::numeric, 1),
               regexp_replace(left(query, 400), '\\s+', ' ', 'g')
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY total_plan_time + total_exec_time DESC LIMIT {top}""")
    say(f"  statements by time, µs per item ({per:,} items): calls rows plan exec query")
    total_plan = total_exec = 0.0
    for line in rows.splitlines():
        calls, count, plan, execute, query = line.split("|", 4)
        total_plan += float(plan)
        total_exec += float(execute)
        say(f"    {int(calls):>7,} {int(count):>8,} {float(plan):>6.1f} {float(execute):>7.1f}"
            f"  {query[:160]}")
    say(f"    top {top}: plan {total_plan:.1f} µs + exec {total_exec:.1f} µs per item")


def postgres_cpu_seconds(stack: Stack) -> float:
    """CPU used so far by the postmaster and every backend."""
    return processes_cpu_seconds([stack.pg.postmaster_pid()])


# --- seeding -----------------------------------------------------------------------------------


def seed_events(prefix: str, first: int, count: int) -> str:
    """SQL inserting `count` routed events `<prefix><n>` (1 KB JSON body, as ingest stores)."""
    headers = json.dumps({"content-type": "application/json", "user-agent": "relay-bench/1"})
    return f"""
        INSERT INTO event (id, source_slug, event_type, received_at, method, query, headers,
                           content_type, size, body)
        SELECT '{prefix}' || lpad(g::text, 12, '0'), NULL, 'bench.dispatch', now(), 'POST', '',
               '{headers}', 'application/json', {len(BODY_JSON)},
               convert_to('{BODY_JSON}', 'UTF8')
        FROM generate_series({first}, {first + count - 1}) AS g
    """


def seed_deliveries(prefix: str, first: int, count: int, endpoint_ids: Sequence[str],
                    event_prefix: str, event_first: int = 1, event_count: int | None = None,
                    due_spread: str = "1 microsecond") -> str:
    """SQL inserting `count` pending deliveries, due now, round-robin over `endpoint_ids`,
    delivery n carrying event `event_first + (n - first) % event_count`, oldest first in
    the order of n (spread by `due_spread` each)."""
    endpoints = "ARRAY[" + ",".join(f"'{e}'" for e in endpoint_ids) + "]"
    event_count = event_count or count
    return f"""
        INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                              next_attempt_at, created_at)
        SELECT '{prefix}' || lpad(g::text, 12, '0'),
               '{event_prefix}' || lpad(({event_first} + (g - {first}) % {event_count})::text,
                                        12, '0'),
               ({endpoints})[1 + (g - {first}) % {len(endpoint_ids)}], 'pending', 0, 0,
               now() - interval '1 day' + (g - {first}) * interval '{due_spread}', now()
        FROM generate_series({first}, {first + count - 1}) AS g
    """


def seed_due(stack: Stack, prefix: str, count: int, endpoint_ids: Sequence[str]) -> None:
    """`count` routed events `evt_<prefix>_<n>` and one due delivery for each, round-robin
    over `endpoint_ids`; then VACUUM ANALYZE and a CHECKPOINT, so a drain starts clean."""
    stack.pg.psql(seed_events(f"evt_{prefix}_", 1, count))
    stack.pg.psql(seed_deliveries(f"dlv_{prefix}_", 1, count, endpoint_ids, f"evt_{prefix}_"))
    stack.pg.psql("VACUUM ANALYZE event")
    stack.pg.psql("VACUUM ANALYZE delivery")
    stack.pg.psql("CHECKPOINT")


# --- reading results back ----------------------------------------------------------------------


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def wait_for(check, *, timeout: float, what: str, progress=None,
                   interval: float = 0.2, alive=None) -> None:
    """Poll `check()` (async, returns truthy when done) until done or `timeout` seconds;
    `progress()` (async, returns a line) is printed every second."""
    deadline = time.monotonic() + timeout
    next_line = time.monotonic() + 1.0
    while True:
        if alive is not None:
            alive()
        if await check():
            return
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        if progress is not None and now >= next_line:
            say(await progress())
            next_line = now + 1.0
        await asyncio.sleep(interval)


# --- one timed drain ---------------------------------------------------------------------------


def start_profiler(pid: int, output: str) -> subprocess.Popen:
    """py-spy (in the venv) sampling a dispatcher into `output` (raw collapsed stacks)."""
    return subprocess.Popen(
        [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--rate", "250",
         "--format", "raw", "--output", output],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def drain(stack: Stack, name: str, *, remaining_sql: str, remaining_args: Sequence = (),
                total: int, endpoint_ids: Sequence[str], timeout: float,
                profile: str | None = None, interval: float = 0.05,
                on_progress=None, any_left_sql: str | None = None) -> dict[str, Any]:
    """Start `runrelay` (as `make run` does), wait until `remaining_sql` (a count, polled
    every `interval` s) is 0, stop it. The time runs from the first attempt to one of
    `endpoint_ids` (its recorded start) to the poll that saw 0.

    With `any_left_sql` (an EXISTS over the same rows, with the same arguments), that is
    what is polled every `interval` s, and the count only for the progress line once a
    second: counting thousands of rows 20 times a second took PostgreSQL CPU from the
    machine the dispatchers run on.

    Returns seconds, rate (`total` / seconds), CPU µs per item of the dispatcher and of
    PostgreSQL (less the backend answering this poll: the bench's work, not Relay's), the dispatcher's (on-CPU, waiting-for-CPU) seconds and its largest RSS.
    """
    connection = await connect(stack.url)
    poller = [await connection.fetchval("SELECT pg_backend_pid()")]
    dispatcher = stack.runrelay(name)
    profiler = start_profiler(dispatcher.pid, profile) if profile else None
    try:
        statements_reset(stack)
        kinds_before = postgres_cpu_by_kind(stack)
        cpu_before = (dispatcher.cpu_seconds(),
                      postgres_cpu_seconds(stack) - processes_cpu_seconds(poller))
        sched_before = dispatcher.schedstat()
        remaining = [total]
        last = [time.monotonic(), total]

        async def done() -> bool:
            if any_left_sql is not None:
                return not await connection.fetchval(any_left_sql, *remaining_args)
            remaining[0] = await connection.fetchval(remaining_sql, *remaining_args)
            return remaining[0] <= 0

        async def progress() -> str:
            if any_left_sql is not None:
                remaining[0] = await connection.fetchval(remaining_sql, *remaining_args)
            now = time.monotonic()
            rate = (last[1] - remaining[0]) / (now - last[0])
            last[0], last[1] = now, remaining[0]
            extra = on_progress() if on_progress is not None else ""
            return (f"    {total - remaining[0]:>9,} / {total:,}  {rate:7,.0f}/s  dispatcher "
                    f"RSS {dispatcher.rss() / 2**20:.0f} MiB{extra}")

        await wait_for(done, timeout=timeout, what=f"{name} to finish", progress=progress,
                       interval=interval, alive=dispatcher.check_alive)
        finished = time.time()
        dispatcher.rss()
        cpu_after = (dispatcher.cpu_seconds(),
                     postgres_cpu_seconds(stack) - processes_cpu_seconds(poller))
        sched_after = dispatcher.schedstat()
        statements_report(stack, total)
        kinds_after = postgres_cpu_by_kind(stack)
        say("  PostgreSQL CPU per item by process: " + ", ".join(
            f"{kind} {(kinds_after[kind] - kinds_before.get(kind, 0.0)) / total * 1e6:.0f} µs"
            for kind in sorted(kinds_after, key=lambda k: -kinds_after[k])
            if kinds_after[kind] - kinds_before.get(kind, 0.0) > 0))
        first = await connection.fetchval(
            "SELECT extract(epoch FROM min(started_at)) FROM attempt"
            " WHERE endpoint_id = ANY($1::text[])", list(endpoint_ids))
    finally:
        await connection.close()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        dispatcher.stop()
    seconds = finished - float(first)
    return {
        "seconds": seconds, "rate": total / seconds, "items": total,
        "dispatcher_us": (cpu_after[0] - cpu_before[0]) / total * 1e6,
        "postgres_us": (cpu_after[1] - cpu_before[1]) / total * 1e6,
        "sched": (sched_after[0] - sched_before[0], sched_after[1] - sched_before[1]),
        "rss_mib": max(dispatcher.rss_samples, default=0) / 2**20,
        "rss_samples_mib": [value / 2**20 for value in dispatcher.rss_samples],
    }


def starved(result: dict[str, Any]) -> float:
    """Share of the drain the dispatcher was ready to run but waited for a CPU."""
    on_cpu, waiting = result["sched"]
    return waiting / (on_cpu + waiting) if on_cpu + waiting else 0.0


def reset_tables(stack: Stack, *, events: bool = True) -> None:
    """Empty the queue (and the events, unless told not to) and put every endpoint's health
    back to new."""
    stack.pg.psql("TRUNCATE delivery, attempt" + (", event, event_unrouted" if events else ""))
    stack.pg.psql("UPDATE endpoint SET circuit_opened_at = NULL, consecutive_failures = 0,"
                  " circuit_probe_at = NULL, first_failure_at = NULL, last_success_at = NULL")


# --- the command line ----------------------------------------------------------------------


def bench_main(doc: str, orchestrate, add_arguments=None, *, concurrency: int = 100,
               runs: int | None = None, timeout: float | None = 300.0, check=None) -> int:
    """Parse the options the dispatcher benchmarks share (`--concurrency`, and `--runs` and
    `--timeout` when given defaults) plus `add_arguments(parser)`'s, then run
    `orchestrate(args)` on uvloop: a BenchError is printed as `ERROR …` and exits 1.
    `check(parser, args)` may refuse a combination of options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=concurrency,
                        help=f"RELAY_DISPATCH_CONCURRENCY ({concurrency})")
    if runs is not None:
        parser.add_argument("--runs", type=int, default=runs, help=f"runs ({runs})")
    if timeout is not None:
        parser.add_argument("--timeout", type=float, default=timeout,
                            help=f"give up on a drain after this many seconds ({timeout:g})")
    parser.add_argument("--web-workers", type=int, metavar="N",
                        help="runrelay's web workers (default: its own, as `make run`)")
    parser.add_argument("--dispatchers", type=int, metavar="M",
                        help="runrelay's dispatchers (default: its own, as `make run`)")
    args = parser.parse_args()
    for option, value in (("--web-workers", args.web_workers), ("--dispatchers", args.dispatchers)):
        if value is not None:
            RUNRELAY_ARGS.extend([option, str(value)])
    if check is not None:
        check(parser, args)
    try:
        return uvloop.run(orchestrate(args))
    except BenchError as error:
        say(f"ERROR {error}")
        return 1


def ratio_line(label: str, ratios: Sequence[float], target: float) -> str | None:
    """Print the median and range of `ratios`; returns what was missed (None: met)."""
    middle = median(ratios)
    say(f"{label}: median {middle:.2f} (range {min(ratios):.2f}–{max(ratios):.2f}), "
        f"target ≥ {target}")
    return f"{middle:.2f} < {target}" if middle < target else None


def verdict(problems: Sequence[str], missed: str | None = None) -> int:
    """Print every problem and a missed target; the exit status."""
    for problem in problems:
        say(f"ERROR {problem}")
    if missed:
        say(f"MISSED target: {missed}")
        return 1
    return 1 if problems else 0

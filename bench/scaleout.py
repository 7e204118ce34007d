"""Delivery throughput with 1 and with 2 dispatcher processes on the same PostgreSQL.

    .venv/bin/python bench/scaleout.py [--events 5000] [--endpoints 4] [--max-in-flight 200]

Starts a throwaway PostgreSQL 16 (fsync on), nginx on 127.0.0.1 answering 204 (the
subscriber), and Relay's schema with `--endpoints` endpoints pointing at nginx. For each
dispatcher count (1, then 2) it stores `--events` events straight into the database (as
if ingested while no dispatcher ran), starts `python manage.py dispatch` processes, and
times how long they take to route and deliver the backlog (events × endpoints
deliveries). Prints deliveries/s for both, the ratio, and where the CPU went (dispatchers,
PostgreSQL, nginx), measured with psutil. Checks every delivery succeeded exactly once per
(event, endpoint). Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PYTHON, ROOT, BenchError, Postgres, http_json  # noqa: E402
from _sink import NginxSink  # noqa: E402
from ingest import manage, relay_env  # noqa: E402


def say(line: str = "") -> None:
    print(line, flush=True)


def dispatch_command_exists(env: dict[str, str]) -> bool:
    done = subprocess.run([PYTHON, "manage.py", "help", "dispatch"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


class CpuMeter:
    """CPU seconds used by groups of processes (children included) between two samples."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start: dict[str, float] = {}

    def _sample(self, pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            try:
                process = psutil.Process(pid)
                for member in [process, *process.children(recursive=True)]:
                    times = member.cpu_times()
                    total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def begin(self) -> None:
        self.start = {name: self._sample(pids) for name, pids in self.groups.items()}

    def end(self) -> dict[str, float]:
        return {name: self._sample(pids) - self.start[name] for name, pids in self.groups.items()}


def seed_events(pg: Postgres, count: int, generation: int) -> None:
    pg.psql("TRUNCATE event, delivery, attempt")
    pg.psql(f"""
        INSERT INTO event (id, source_slug, event_type, received_at, method, query, headers,
                           content_type, size, body)
        SELECT 'evt_{generation}' || lpad(g::text, 25, '0'), NULL, 'bench.scaleout',
               now(), 'POST', '', '{{"content-type": "application/json"}}',
               'application/json', 1024,
               convert_to('{{"n": ' || g || ', "pad": "' || repeat('x', 1000) || '"}}', 'UTF8')
        FROM generate_series(1, {count}) AS g
    """)
    pg.psql("VACUUM ANALYZE event")


def run(dispatchers: int, pg: Postgres, env: dict[str, str], sink: NginxSink,
        args: argparse.Namespace, workdir: Path, generation: int) -> dict[str, Any]:
    expected = args.events * args.endpoints
    seed_events(pg, args.events, generation)
    say(f"{dispatchers} dispatcher(s): {args.events:,} events x {args.endpoints} endpoints = "
        f"{expected:,} deliveries")
    processes = []
    logs = []
    for number in range(dispatchers):
        log = open(workdir / f"dispatch-{dispatchers}-{number}.log", "wb")  # noqa: SIM115
        logs.append(log)
        processes.append(subprocess.Popen([PYTHON, "manage.py", "dispatch"], cwd=ROOT, env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    meter = CpuMeter({"dispatchers": [p.pid for p in processes],
                      "postgres": [pg.postmaster_pid()], "nginx": sink.pids()})
    try:
        started = time.monotonic()
        first = None
        last_print = started
        while True:
            for number, process in enumerate(processes):
                if process.poll() is not None:
                    log_path = workdir / f"dispatch-{dispatchers}-{number}.log"
                    tail = log_path.read_text(errors="replace").splitlines()[-30:]
                    raise BenchError(f"dispatcher {number} exited with {process.returncode}:\n"
                                     + "\n".join(tail))
            done = int(pg.psql("SELECT count(*) FROM delivery WHERE status = 'succeeded'"))
            now = time.monotonic()
            if first is None and done > 0:
                first = now
                meter.begin()
            if done >= expected:
                break
            if now - last_print >= 2:
                say(f"  {done:,} / {expected:,} delivered")
                last_print = now
            if now - started > args.timeout:
                raise BenchError(f"only {done:,} of {expected:,} delivered in {args.timeout:.0f} s")
            time.sleep(0.2)
        finished = time.monotonic()
        cpu = meter.end()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
    seconds = finished - (first or started)
    checks = pg.psql(
        "SELECT (SELECT count(*) FROM delivery),"
        " (SELECT count(*) FROM (SELECT DISTINCT event_id, endpoint_id FROM delivery) AS pairs),"
        " (SELECT count(*) FROM delivery WHERE status <> 'succeeded'),"
        " (SELECT count(*) FROM attempt)")
    total, pairs, not_done, attempts = (int(part) for part in checks.split("|"))
    problems = []
    if total != expected or pairs != expected or not_done:
        problems.append(f"{dispatchers} dispatcher(s): {total} deliveries, {pairs} distinct "
                        f"(event, endpoint), {not_done} not succeeded; expected {expected}")
    rate = expected / seconds
    say(f"  {rate:,.0f} deliveries/s ({expected:,} in {seconds:.1f} s after the first success; "
        f"{attempts:,} attempts)")
    return {"dispatchers": dispatchers, "rate": rate, "seconds": seconds, "cpu": cpu,
            "deliveries": expected, "attempts": attempts, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per run (5000)")
    parser.add_argument("--endpoints", type=int, default=4, help="endpoints, all to nginx (4)")
    parser.add_argument("--max-in-flight", type=int, default=200,
                        help="each endpoint's max_in_flight (200)")
    parser.add_argument("--concurrency", type=int, default=200,
                        help="RELAY_DISPATCH_CONCURRENCY per dispatcher (200)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (600 s)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-scaleout-"))
    pg = Postgres()
    sink = NginxSink()
    try:
        say("Starting PostgreSQL (fsync on) and nginx (204) on 127.0.0.1 ...")
        pg.start()
        sink.start()
        env = relay_env(pg.url, workdir / "relay-data", 10)
        env.update({"RELAY_TARGET_ALLOWLIST": "127.0.0.1", "RELAY_LOG_LEVEL": "WARNING",
                    "RELAY_DISPATCH_CONCURRENCY": str(args.concurrency),
                    "RELAY_METRICS_DIR": str(workdir / "metrics")})
        if not dispatch_command_exists(env):
            raise BenchError("`python manage.py dispatch` does not exist in this checkout yet")
        manage(env, "migrate")
        token = manage(env, "createtoken", "--name", "bench").strip().splitlines()[-1]
        create_endpoints(env, token, sink, args, workdir)

        results = [run(count, pg, env, sink, args, workdir, generation)
                   for generation, count in enumerate((1, 2), start=1)]
        say()
        say(f"Delivery throughput, {args.events:,} events x {args.endpoints} endpoints per run, "
            f"nginx 204 subscriber, PostgreSQL fsync on, {os.cpu_count()} cores")
        for result in results:
            cpu = result["cpu"]
            total = sum(cpu.values()) or 1.0
            split = ", ".join(f"{name} {seconds:.1f} s ({seconds / total:.0%}, "
                              f"{seconds / result['deliveries'] * 1e6:.0f} µs/delivery)"
                              for name, seconds in cpu.items())
            say(f"  {result['dispatchers']} dispatcher(s): {result['rate']:8,.0f} deliveries/s; "
                f"CPU: {split}")
        ratio = results[1]["rate"] / results[0]["rate"]
        say(f"  ratio 2 / 1: {ratio:.2f}")
        problems = [problem for result in results for problem in result["problems"]]
        for problem in problems:
            say(f"ERROR {problem}")
        return 1 if problems else 0
    except BenchError as error:
        say(f"ERROR {error}")
        return 1
    finally:
        sink.stop()
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def create_endpoints(env: dict[str, str], token: str, sink: NginxSink,
                     args: argparse.Namespace, workdir: Path) -> None:
    """Through the API (a short-lived web server), as an integrator would."""
    from _servers import Server

    web = Server("web", "relay.asgi:application", env, workdir)
    web.start()
    try:
        for number in range(args.endpoints):
            status, answer = http_json("POST", f"{web.base}/api/v1/endpoints", {
                "url": f"{sink.url}?n={number}", "max_in_flight": args.max_in_flight,
                "description": f"scaleout {number}",
            }, headers={"Authorization": f"Bearer {token}"})
            if status != 201:
                raise BenchError(f"creating an endpoint failed: {status} {answer}")
    finally:
        web.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Durable ingest throughput and latency: Relay against a raw asyncpg baseline, same run.

    .venv/bin/python bench/ingest.py [--duration 10] [--connections 64] [--runs 1]

Starts a throwaway PostgreSQL 16 (fsync on, synchronous_commit on) and two servers on
127.0.0.1, each under uvicorn with one worker, uvloop and httptools:

- baseline: a raw ASGI app doing one asyncpg INSERT of an event row per request (202);
- Relay: relay.asgi:application with its migrated schema and an `hmac` source (sha256,
  dedup off), receiving a 1 KB JSON body signed correctly, so verification runs.

Each gets the same load (N keep-alive connections, a warm-up, then a fixed measured
window) from a load generator in its own process. Prints req/s, p50 and p99 latency, the
ratio Relay / baseline, the CPU used per request, and checks that the rows in the event
table equal the 2xx answers given (nothing acknowledged and lost). Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _servers import (
    PYTHON,
    BenchError,
    Postgres,
    Server,
    http_json,
    migrated_with_token,
    run_loadgen,
)

SOURCE_SLUG = "bench"
SIGNATURE_HEADER = "x-signature"
BODY_BYTES = 1024
TARGET_RATIO = 0.6


def say(line: str = "") -> None:
    print(line, flush=True)


def webhook_body(size: int = BODY_BYTES) -> bytes:
    """A JSON body of exactly `size` bytes, shaped like a provider's event."""
    payload: dict[str, Any] = {
        "id": "evt_bench_000001", "type": "order.created", "created": 1767225600,
        "data": {"object": {"id": "ord_123", "amount": 4200, "currency": "eur",
                            "customer": {"id": "cus_42", "email": "someone@example.com"},
                            "items": [{"sku": f"sku-{n}", "quantity": n} for n in range(1, 6)]}},
        "padding": "",
    }
    payload["padding"] = "x" * (size - len(json.dumps(payload, separators=(",", ":"))))
    body = json.dumps(payload, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def relay_env(database_url: str, data_dir: Path, pool_size: int,
              request_log: bool = False) -> dict[str, str]:
    """Relay's defaults, except the per-request log line (an access log: off, like
    uvicorn's, unless asked for), the database pool size (the baseline's) and the log
    level (WARNING: the servers' logs go to files nobody reads while they run)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update({
        "RELAY_DATABASE_URL": database_url,
        "RELAY_DATA_DIR": str(data_dir),
        "RELAY_METRICS_DIR": str(data_dir / "metrics"),  # removed with the data dir
        "RELAY_SECRET_KEY": secrets.token_urlsafe(32),
        "RELAY_DATABASE_POOL_SIZE": str(pool_size),
        "RELAY_REQUEST_LOG": "true" if request_log else "false",
        "RELAY_LOG_LEVEL": "INFO" if request_log else "WARNING",
        "DJANGO_SETTINGS_MODULE": "relay.settings",
    })
    return env


def create_source(relay: Server, token: str, secret: str) -> None:
    status, answer = http_json("POST", f"{relay.base}/api/v1/sources", {
        "slug": SOURCE_SLUG, "name": "benchmark",
        "verification": {"kind": "hmac", "secret": secret, "header": SIGNATURE_HEADER,
                         "algorithm": "sha256", "encoding": "hex"},
    }, headers={"Authorization": f"Bearer {token}"})
    if status != 201:
        raise BenchError(f"creating the benchmark source failed: {status} {answer}")
    if answer.get("dedup") is not None:
        raise BenchError(f"the benchmark source must not dedup: {answer}")


def check_answers(server: Server, headers: dict[str, str], body: bytes) -> None:
    """One request before the load: it must be accepted, and a wrong signature refused."""
    status, answer = http_json("POST", f"{server.base}/in/{SOURCE_SLUG}", body=body, headers=headers)
    if status != 202 or not str(answer.get("id", "")).startswith("evt_"):
        raise BenchError(f"{server.name} answered {status} {answer} to a signed webhook\n"
                         f"{server.log_tail()}")
    if server.name == "relay":
        forged = {**headers, SIGNATURE_HEADER: "0" * 64}
        status, answer = http_json("POST", f"{server.base}/in/{SOURCE_SLUG}", body=body,
                                   headers=forged)
        if status != 401:
            raise BenchError(f"relay answered {status} {answer} to a forged signature, not 401\n"
                             f"{server.log_tail()}")


def start_profiler(server: Server, args: argparse.Namespace, number: int) -> threading.Thread:
    """py-spy on Relay's process for the measured window (after the warm-up).

    The output format follows the file name: .svg flame graph, .json speedscope, else
    py-spy's raw collapsed stacks. Sampling slows the server: a profiled run's figures
    are for finding where the time goes, not for the ratio.
    """
    target = args.profile.with_name(f"{args.profile.stem}.run{number}{args.profile.suffix}")
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(args.profile.suffix, "raw")
    command = [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(server.process.pid),
               "--duration", str(max(1, int(args.duration))), "--rate", "100",
               "--format", fmt, "--output", str(target)]

    def record() -> None:
        time.sleep(args.warmup)
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            say(f"  py-spy failed: {completed.stderr.strip()[-300:]}")
        else:
            say(f"  profile of relay written to {target}")

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def wal_syncs(pg: Postgres) -> int:
    """WAL flushes to disk so far (each durable COMMIT waits for one, or shares one)."""
    return int(pg.psql("SELECT wal_sync FROM pg_stat_wal"))


def measure(server: Server, pg: Postgres, args: argparse.Namespace, headers: dict[str, str],
            body: bytes, workdir: Path, number: int) -> dict[str, Any]:
    pg.psql("TRUNCATE event")
    pg.psql("CHECKPOINT")
    say(f"  {server.name}: {args.warmup:g} s warm-up + {args.duration:g} s measured, "
        f"{args.connections} connections")
    profiler = None
    if args.profile and server.name == "relay":
        profiler = start_profiler(server, args, number)
    wal_syncs_before = wal_syncs(pg)
    result = run_loadgen({
        "label": server.name, "host": "127.0.0.1", "port": server.port,
        "path": f"/in/{SOURCE_SLUG}", "headers": headers, "body_hex": body.hex(),
        "connections": args.connections, "warmup": args.warmup, "duration": args.duration,
        "watch": {"server": server.process.pid, "postgres": pg.postmaster_pid()},
    }, workdir)
    if profiler is not None:
        profiler.join()
    server.check_alive()
    result["rows"] = int(pg.psql("SELECT count(*) FROM event"))
    result["wal_syncs_per_row"] = (wal_syncs(pg) - wal_syncs_before) / max(result["rows"], 1)
    cpu = result["cpu_seconds"]
    measured = max(result["measured"], 1)
    result["server_us"] = cpu.get("server", 0.0) / measured * 1e6
    result["postgres_us"] = cpu.get("postgres", 0.0) / measured * 1e6
    result["server_cpu_share"] = cpu.get("server", 0.0) / args.duration
    ours = cpu.get("server", 0.0) + cpu.get("postgres", 0.0) + result["loadgen_cpu_share"] * args.duration
    result["other_cpu_share"] = max(0.0, cpu.get("machine", ours) - ours) / args.duration
    say(f"  {server.name}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms; server CPU {result['server_us']:.0f} µs/req "
        f"({result['server_cpu_share']:.0%} of a core), PostgreSQL {result['postgres_us']:.0f} µs/req, "
        f"load generator {result['loadgen_cpu_share']:.0%} of a core, "
        f"other processes on the machine {result['other_cpu_share']:.0%} of a core; "
        f"{result['wal_syncs_per_row']:.2f} WAL flushes per stored event")
    return result


def problems_of(result: dict[str, Any]) -> list[str]:
    problems = []
    name = result["label"]
    non_2xx = {code: n for code, n in result["statuses"].items() if not code.startswith("2")}
    if non_2xx:
        problems.append(f"{name}: non-2xx answers {non_2xx}")
    if result["error_count"]:
        problems.append(f"{name}: {result['error_count']} connection errors, e.g. {result['errors'][:3]}")
    if result["rows"] != result["answered_2xx"]:
        problems.append(f"{name}: {result['answered_2xx']} answers 2xx but {result['rows']} rows "
                        "in the event table")
    if result["measured"] == 0:
        problems.append(f"{name}: no answer in the measured window")
    return problems


def report(runs: list[tuple[dict[str, Any], dict[str, Any]]], args: argparse.Namespace) -> None:
    say()
    say(f"Durable ingest, {args.connections} connections, {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up, 1 KB signed JSON, 1 uvicorn worker each, fsync on")
    say(f"{'run':>4} {'server':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU µs/req':>11} {'PG µs/req':>10} {'flush/row':>10} {'other CPU':>10} {'2xx':>8} "
        f"{'rows':>8}")
    for number, pair in enumerate(runs, 1):
        for result in pair:
            say(f"{number:>4} {result['label']:<9} {result['rps']:>8,.0f} {result['p50_ms']:>8.1f} "
                f"{result['p99_ms']:>8.1f} {result['server_us']:>11.0f} {result['postgres_us']:>10.0f} "
                f"{result['wal_syncs_per_row']:>10.2f} {result['other_cpu_share']:>10.0%} "
                f"{result['answered_2xx']:>8} {result['rows']:>8}")
    ratios = [relay["rps"] / baseline["rps"] if baseline["rps"] else 0.0
              for baseline, relay in runs]
    say()
    if len(ratios) == 1:
        say(f"ratio relay / baseline: {ratios[0]:.2f} (target ≥ {TARGET_RATIO})")
    else:
        say(f"ratio relay / baseline: median {statistics.median(ratios):.2f}, "
            f"range {min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} runs "
            f"(target ≥ {TARGET_RATIO})")
    loadgen = max(result["loadgen_cpu_share"] for pair in runs for result in pair)
    say(f"load generator: at most {loadgen:.0%} of one core")
    say("every 2xx answer is a row in the event table: "
        + ("yes" if all(r["rows"] == r["answered_2xx"] for pair in runs for r in pair) else "NO"))


def main() -> int:
    parser = argparse.ArgumentParser(description="Relay's durable ingest against a raw asyncpg baseline.")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server (10)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (64)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (3)")
    parser.add_argument("--runs", type=int, default=1, help="baseline/Relay pairs to measure (1)")
    parser.add_argument("--pool-size", type=int, default=10, help="database pool size of both (10)")
    parser.add_argument("--request-log", action="store_true",
                        help="keep Relay's one log line per request (off by default, like "
                             "uvicorn's access log for both servers)")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="record Relay with py-spy during each measured window "
                             "(FILE.runN.svg|.json|.txt); slows Relay down while it samples")
    args = parser.parse_args()
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0 or args.runs < 1:
        parser.error("--connections and --runs must be at least 1, --duration above 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill as on Ctrl-C

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    pg = Postgres()
    servers: list[Server] = []
    try:
        say("Starting PostgreSQL (fsync on, synchronous_commit on) ...")
        pg.start()
        env = relay_env(pg.url, workdir / "relay-data", args.pool_size, args.request_log)
        say("Migrating Relay's schema ...")
        token = migrated_with_token(env)

        say("Starting the servers (uvicorn, 1 worker, uvloop, httptools, no access log) ...")
        relay = Server("relay", "relay.asgi:application", env, workdir)
        baseline = Server("baseline", "bench._baseline:app", {
            **env, "BENCH_DATABASE_URL": pg.url, "BENCH_POOL_SIZE": str(args.pool_size),
        }, workdir)
        servers += [relay, baseline]
        for server in servers:
            server.start()

        secret = secrets.token_hex(32)
        create_source(relay, token, secret)
        body = webhook_body()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "relay-bench/1",
            SIGNATURE_HEADER: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        for server in servers:
            check_answers(server, headers, body)

        runs = []
        problems: list[str] = []
        for number in range(1, args.runs + 1):
            say(f"Run {number} of {args.runs}:")
            order = (baseline, relay) if number % 2 else (relay, baseline)  # no order bias
            results = {server.name: measure(server, pg, args, headers, body, workdir, number)
                       for server in order}
            pair = (results["baseline"], results["relay"])
            runs.append(pair)
            for result in pair:
                problems += problems_of(result)
        report(runs, args)
        if args.json:
            args.json.write_text(json.dumps([list(pair) for pair in runs], indent=2))
        if problems:
            say()
            for problem in problems:
                say(f"ERROR {problem}")
            return 1
        return 0
    except BenchError as error:
        say(f"ERROR {error}")
        return 1
    finally:
        for server in servers:
            server.stop()
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Ingest on the path real providers take, on an empty and on a full dedup window.

    .venv/bin/python bench/ingest_dedup.py [--stored 2000000] [--rounds 3] [--duration 10]

Relay runs as users run it (`manage.py runrelay`, the command `make run` starts) against a
throwaway PostgreSQL 16 (fsync on), with a `standard_webhooks` source: dedup on
`webhook-id` is on by default, as for every GitHub, Stripe, Shopify and Standard Webhooks
source. Each request carries a fresh `webhook-id` and a valid signature (1 KB JSON body).
Relay logs as the default install does (a line per request) unless `--no-request-log`.

In one run, with the same load generator (64 keep-alive connections), `--rounds` windows of
each kind (3), alternating so that drift on a shared machine hits both sides:
1. the baseline (a raw ASGI app doing one asyncpg INSERT per request, bench/_baseline.py)
   and Relay with an empty event table, in turn;
2. the event table filled by SQL with `--stored` events of this source inside the dedup
   window (received in the last hour, routed), then Relay and the baseline in turn.
The ratios use the median of each kind's windows; Relay empty is compared with the
baseline windows it alternated with (the machine's speed drifts over a run).

Prints req/s, latency, CPU per request, and the two ratios the design asks for:
Relay empty / baseline (target ≥ 0.6) and Relay full / Relay empty (target ≥ 0.9).
Checks that every 2xx is a stored row and that a repeated `webhook-id` answers 200.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _dispatch_common import statements_report, statements_reset
from _servers import (
    PYTHON,
    ROOT,
    BenchError,
    Postgres,
    Server,
    free_port,
    http_json,
    migrated_with_token,
    run_loadgen,
    wait_for_port,
)
from ingest import relay_env, webhook_body

SOURCE_SLUG = "provider"
TARGET_EMPTY = 0.6
TARGET_FULL = 0.9

_B32 = " || ".join(
    f"substr('0123456789abcdefghjkmnpqrstvwxyz', ((ms >> {5 * (9 - i)}) & 31)::int + 1, 1)"
    for i in range(10))
_FILL = f"""
INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at, method,
                   query, headers, content_type, size, body)
SELECT 'evt_' || {_B32} || lpad(to_hex(g), 16, '0'),
       $1::text, $2::text, 'order.created', 'msg_prefill_' || g, t, 'POST', '',
       '{{"content-type": "application/json"}}', 'application/json', length($3::bytea), $3::bytea
FROM generate_series($4::bigint, $5::bigint) AS g,
     LATERAL (SELECT now() - interval '1 hour' + (g::float8 / $6) * interval '59 minutes'
              AS t) AS at,
     LATERAL (SELECT (extract(epoch FROM t) * 1000)::bigint AS ms) AS m
"""


async def explain_lookup(connection: Any, source_id: str) -> None:
    """EXPLAIN ANALYZE of ingest's duplicate lookup for a group of 64 keys, half of them
    stored: it must stay a few index probes whatever the number of events stored."""
    from hooks.store import find_originals_sql, partitions_covering
    from kernel.partitions import day_partitions

    since = datetime.fromtimestamp(time.time() - 24 * 3600, UTC)
    read = partitions_covering(await day_partitions(connection, "event"), since)
    keys = [f"msg_prefill_{n * 997 + 1}" for n in range(32)] + [f"msg_new_{n}" for n in range(32)]
    plan = await connection.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + find_originals_sql(read),
        list(range(64)), [source_id] * 64, keys, [since] * 64, [None] * 64,
        ["order.created"] * 64)
    top = json.loads(plan)[0]
    buffers = top["Plan"].get("Shared Hit Blocks", 0) + top["Plan"].get("Shared Read Blocks", 0)
    probes = "Seq Scan" not in plan and "dedup_key" in plan and "Index Cond" in plan
    say(f"  duplicate lookup of 64 keys: {top['Execution Time']:.2f} ms, {buffers} buffers "
        f"({'index probes' if probes else 'NOT AN INDEX PROBE'})")


def fill(url: str, source_id: str, body: bytes, count: int, chunk: int = 250_000) -> None:
    """`count` events of the source inside the dedup window, in chunks, with progress."""
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            for low in range(1, count + 1, chunk):
                high = min(count, low + chunk - 1)
                await connection.execute(_FILL, source_id, SOURCE_SLUG, body, low, high, count,
                                         timeout=3600)
                say(f"  {high:,} of {count:,} stored")
            await connection.execute("ANALYZE event")
            await explain_lookup(connection, source_id)
        finally:
            await connection.close()

    asyncio.run(run())


def say(line: str = "") -> None:
    print(line, flush=True)


class RunRelay:
    """`manage.py runrelay`, as `make run` starts it, on a free port."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.name = "relay"
        self.env = env
        self.port = free_port()
        self.log_path = logs / "runrelay.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(
            [PYTHON, "manage.py", "runrelay", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, "runrelay", timeout=90)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"runrelay exited with {self.process.returncode}\n"
                             + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def sign(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": f"v1,{base64.b64encode(mac).decode()}"}


def create_source(relay: RunRelay, token: str, secret: str) -> str:
    status, answer = http_json("POST", f"{relay.base}/api/v1/sources", {
        "slug": SOURCE_SLUG, "name": "a Standard Webhooks provider",
        "verification": {"kind": "standard_webhooks", "secret": secret},
    }, headers={"Authorization": f"Bearer {token}"})
    if status != 201:
        raise BenchError(f"creating the source failed: {status} {answer}")
    return str(answer["id"])


def check_dedup(relay: RunRelay, secret: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", **sign(secret, "msg_check", body)}
    first = http_json("POST", f"{relay.base}/in/{SOURCE_SLUG}", body=body, headers=headers)
    again = http_json("POST", f"{relay.base}/in/{SOURCE_SLUG}", body=body, headers=headers)
    if first[0] != 202 or again[0] != 200 or again[1].get("id") != first[1].get("id"):
        raise BenchError(f"dedup check failed: {first} then {again}")


def start_profiler(pid: int, output: str, warmup: float, duration: float) -> threading.Thread:
    """py-spy over runrelay and its children (web workers, dispatchers) for the measured
    window of the empty run, as raw collapsed stacks. Sampling slows Relay: a profiled
    run's figures are for finding where the time goes, not for the ratio."""
    command = [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid),
               "--subprocesses", "--duration", str(max(1, int(duration))), "--rate", "100",
               "--format", "raw", "--output", output]

    def record() -> None:
        time.sleep(warmup)
        completed = subprocess.run(command, capture_output=True, text=True)
        say(f"  py-spy failed: {completed.stderr.strip()[-300:]}" if completed.returncode
            else f"  profile of runrelay written to {output}")

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def measure(server: Any, pg: Postgres, args: argparse.Namespace, label: str, body: bytes,
            workdir: Path, secret: str | None) -> dict[str, Any]:
    pg.psql("CHECKPOINT")
    rows_before = int(pg.psql("SELECT count(*) FROM event"))
    spec: dict[str, Any] = {
        "label": label, "host": "127.0.0.1", "port": server.port,
        "path": f"/in/{SOURCE_SLUG}", "headers": {"Content-Type": "application/json",
                                                   "User-Agent": "relay-bench/1"},
        "body_hex": body.hex(), "connections": args.connections, "warmup": args.warmup,
        "duration": args.duration,
        "watch": {"server": server.process.pid, "postgres": pg.postmaster_pid()},
    }
    if secret:
        spec["standard_webhooks_secret"] = secret
    observed = SimpleNamespace(pg=pg)
    statements_reset(observed)
    profiler = None
    if args.profile and label == "relay-empty":
        profiler = start_profiler(server.process.pid, args.profile, args.warmup, args.duration)
    result = run_loadgen(spec, workdir)
    if profiler is not None:
        profiler.join()
    server.check_alive()
    result["rows"] = int(pg.psql("SELECT count(*) FROM event")) - rows_before
    statements_report(observed, max(result["rows"], 1))
    cpu, measured = result["cpu_seconds"], max(result["measured"], 1)
    result["server_us"] = cpu.get("server", 0.0) / measured * 1e6
    result["postgres_us"] = cpu.get("postgres", 0.0) / measured * 1e6
    say(f"  {label}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms; server {result['server_us']:.0f} µs/req, "
        f"PostgreSQL {result['postgres_us']:.0f} µs/req; statuses {result['statuses']}")
    problems = []
    if result["rows"] != result["answered_2xx"]:
        problems.append(f"{label}: {result['answered_2xx']} answers 2xx, {result['rows']} rows")
    if any(not code.startswith("2") for code in result["statuses"]) or result["error_count"]:
        problems.append(f"{label}: {result['statuses']} {result['errors'][:3]}")
    if problems:
        raise BenchError("; ".join(problems))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=2_000_000,
                        help="events stored in the dedup window before the second run (2 M)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (3)")
    parser.add_argument("--connections", type=int, default=64, help="connections (64)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="windows of each kind (3): baseline and Relay empty alternate, "
                             "then Relay full and baseline; the ratios use the medians")
    parser.add_argument("--profile", metavar="FILE",
                        help="record runrelay's processes with py-spy during the empty run")
    parser.add_argument("--no-request-log", action="store_true",
                        help="run Relay with RELAY_REQUEST_LOG=false and RELAY_LOG_LEVEL=WARNING "
                             "(default: it logs as the default install does, a line per request)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-dedup-"))
    pg = Postgres()
    servers: list[Any] = []
    try:
        say("Starting PostgreSQL (fsync on, synchronous_commit on) ...")
        pg.start()
        env = relay_env(pg.url, workdir / "relay-data", 10,
                        request_log=not args.no_request_log)
        token = migrated_with_token(env)
        baseline = Server("baseline", "bench._baseline:app", {
            **env, "BENCH_DATABASE_URL": pg.url, "BENCH_POOL_SIZE": "10"}, workdir)
        relay = RunRelay(env, workdir)
        servers += [baseline, relay]
        say("Starting the baseline (uvicorn, 1 worker) and Relay (manage.py runrelay) ...")
        baseline.start()
        relay.start()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        source_id = create_source(relay, token, secret)
        body = webhook_body()
        check_dedup(relay, secret, body)

        baselines, empties, fulls, later_baselines = [], [], [], []
        window = 0
        for _ in range(args.rounds):
            window += 1
            say(f"Window {window}: baseline")
            baselines.append(measure(baseline, pg, args, "baseline", body, workdir, None))
            pg.psql("TRUNCATE event, event_unrouted")
            window += 1
            say(f"Window {window}: Relay, empty event table")
            empties.append(measure(relay, pg, args, "relay-empty", body, workdir, secret))
            args.profile = None  # only the first empty window is profiled
        say(f"Filling the dedup window with {args.stored:,} events of the source (SQL) ...")
        started = time.monotonic()
        fill(pg.url, source_id, body, args.stored)
        size = pg.psql("SELECT pg_size_pretty(sum(pg_total_relation_size(relid)))"
                       " FROM pg_partition_tree('event')")
        say(f"  {args.stored:,} events stored in {time.monotonic() - started:.0f} s; "
            f"event table and indexes: {size}")
        for _ in range(args.rounds):
            window += 1
            say(f"Window {window}: Relay, full dedup window")
            fulls.append(measure(relay, pg, args, "relay-full", body, workdir, secret))
            window += 1
            say(f"Window {window}: baseline")
            later_baselines.append(measure(baseline, pg, args, "baseline", body, workdir, None))

        def rates(results: list[dict[str, Any]]) -> str:
            return ", ".join(f"{result['rps']:,.0f}" for result in results)

        base_rps = statistics.median(result["rps"] for result in baselines)
        later_base_rps = statistics.median(result["rps"] for result in later_baselines)
        empty_rps = statistics.median(result["rps"] for result in empties)
        full_rps = statistics.median(result["rps"] for result in fulls)
        say()
        say(f"Signed standard_webhooks ingest, fresh webhook-id per request, "
            f"{args.connections} connections, default runrelay; medians of the windows:")
        say(f"  baseline     {base_rps:>8,.0f} req/s  ({rates(baselines)}), beside Relay empty")
        say(f"  baseline     {later_base_rps:>8,.0f} req/s  ({rates(later_baselines)}), beside "
            f"Relay full (drift check; Relay full / this: {full_rps / later_base_rps:.2f})")
        say(f"  Relay empty  {empty_rps:>8,.0f} req/s  ({rates(empties)}); p99 "
            f"{statistics.median(result['p99_ms'] for result in empties):.1f} ms")
        say(f"  Relay full   {full_rps:>8,.0f} req/s  ({rates(fulls)}); p99 "
            f"{statistics.median(result['p99_ms'] for result in fulls):.1f} ms "
            f"({args.stored:,} events in the window)")
        say(f"ratio Relay empty / baseline: {empty_rps / base_rps:.2f} (target ≥ {TARGET_EMPTY})")
        say(f"ratio Relay full / Relay empty: {full_rps / empty_rps:.2f} (target ≥ {TARGET_FULL})")
        say("every 2xx answer is a stored row: yes")
        missed = [name for name, ratio, target in (
            ("Relay empty / baseline", empty_rps / base_rps, TARGET_EMPTY),
            ("Relay full / Relay empty", full_rps / empty_rps, TARGET_FULL))
            if ratio < target]
        if missed:
            say(f"MISSED target: {', '.join(missed)}")
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

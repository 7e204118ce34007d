"""Ingest throughput while the retention purge runs, against a large expired backlog.

    .venv/bin/python bench/purge.py [--events 10000000] [--rounds 3] [--duration 8]
                                    [--connections 32] [--batch-size 5000] [--share 0.1]
                                    [--finish]

Starts a throwaway PostgreSQL 16 (fsync on) and Relay under uvicorn (1 worker, uvloop,
httptools) on 127.0.0.1, fills the database with `--events` events received 60 days ago,
each with one succeeded delivery and one attempt (SQL `generate_series`, progress shown),
starts `manage.py purge` (its defaults unless told) and measures signed 1 KB
`POST /in/<slug>` at a fixed concurrency in windows: quiet, purging, purging, quiet, ...
(the purge is frozen with SIGSTOP in the quiet windows, so both kinds see the same
database and the machine's drifting load evens out). Prints both mean rates, the ratio
(target ≥ 0.9) and the purge's own rate, and checks that every 2xx answer is a stored
event. The purge is then stopped (SIGTERM: its open batch rolls back) and the bench
checks that every expired event left still has its delivery and attempt, nothing
orphaned; with `--finish` it lets the purge run to the end instead and checks that the
whole backlog went. Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import (
    PYTHON,
    ROOT,
    BenchError,
    Postgres,
    Server,
    migrated_with_token,
    run_loadgen,
)
from ingest import SIGNATURE_HEADER, SOURCE_SLUG, create_source, relay_env, webhook_body

from relay.retention import DEFAULT_SHARE

TARGET_RATIO = 0.9
SEED_CHUNK = 500_000


def say(line: str = "") -> None:
    print(line, flush=True)


def seed(pg: Postgres, events: int) -> None:
    """`events` expired events with one succeeded delivery and one attempt each."""
    say(f"Seeding {events:,} expired events (+ as many deliveries and attempts) ...")
    started = time.monotonic()
    # Secondary indexes are dropped while seeding and built again after: much faster.
    indexes = [line.split("|", 1) for line in pg.psql(
        "SELECT indexname || '|' || indexdef FROM pg_indexes WHERE tablename IN"
        " ('event', 'delivery', 'attempt') AND indexname NOT LIKE '%pkey'").splitlines()]
    for name, _ in indexes:
        pg.psql(f"DROP INDEX {name}")
    for first in range(1, events + 1, SEED_CHUNK):
        last = min(events, first + SEED_CHUNK - 1)
        pg.psql(f"""
            SET synchronous_commit = off;
            INSERT INTO event (id, source_id, source_slug, event_type, received_at, method,
                               query, headers, content_type, size, body)
            SELECT 'evt_0' || lpad(g::text, 25, '0'), 'src_old', 'old', 'order.created',
                   now() - interval '60 days' + g * interval '1 ms', 'POST', '', '{{}}',
                   'application/json', 64, convert_to(repeat('x', 64), 'UTF8')
            FROM generate_series({first}, {last}) AS g;
            INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, created_at,
                                  completed_at, last_status_code)
            SELECT 'dlv_0' || lpad(g::text, 25, '0'), 'evt_0' || lpad(g::text, 25, '0'),
                   'ep_old', 'succeeded', 1, now() - interval '60 days',
                   now() - interval '60 days', 204
            FROM generate_series({first}, {last}) AS g;
            INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms,
                                 status_code, request_headers, response_headers, response_body)
            SELECT 'att_0' || lpad(g::text, 25, '0'), 'dlv_0' || lpad(g::text, 25, '0'),
                   'ep_old', 1, now() - interval '60 days', 12.5, 204, '{{}}', '{{}}', ''
            FROM generate_series({first}, {last}) AS g;
        """)
        elapsed = time.monotonic() - started
        say(f"  {last:,} / {events:,} ({last / elapsed:,.0f} events/s)")
    say(f"  building {len(indexes)} indexes again ...")
    for _, definition in indexes:
        pg.psql(f"SET maintenance_work_mem = '512MB'; {definition}")
    say("  VACUUM ANALYZE ...")
    for table in ("event", "delivery", "attempt"):
        pg.psql(f"VACUUM ANALYZE {table}")
    say(f"  seeded in {time.monotonic() - started:.0f} s; database size "
        f"{pg.psql('SELECT pg_size_pretty(pg_database_size(current_database()))')}")


def measure(label: str, relay: Server, pg: Postgres, args: argparse.Namespace,
            headers: dict[str, str], body: bytes, workdir: Path) -> dict[str, Any]:
    say(f"  {label}: {args.warmup:g} s warm-up + {args.duration:g} s measured, "
        f"{args.connections} connections")
    before = int(pg.psql("SELECT count(*) FROM event WHERE source_slug = 'bench'"))
    result = run_loadgen({
        "label": label, "host": "127.0.0.1", "port": relay.port, "path": f"/in/{SOURCE_SLUG}",
        "headers": headers, "body_hex": body.hex(), "connections": args.connections,
        "warmup": args.warmup, "duration": args.duration,
        "watch": {"server": relay.process.pid, "postgres": pg.postmaster_pid()},
    }, workdir)
    relay.check_alive()
    result["rows"] = int(pg.psql("SELECT count(*) FROM event WHERE source_slug = 'bench'")) - before
    say(f"  {label}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms")
    return result


def problems_of(result: dict[str, Any]) -> list[str]:
    problems = []
    non_2xx = {code: n for code, n in result["statuses"].items() if not code.startswith("2")}
    if non_2xx:
        problems.append(f"{result['label']}: non-2xx answers {non_2xx}")
    if result["error_count"]:
        problems.append(f"{result['label']}: {result['error_count']} connection errors")
    if result["rows"] != result["answered_2xx"]:
        problems.append(f"{result['label']}: {result['answered_2xx']} answered 2xx but "
                        f"{result['rows']} rows stored")
    return problems


def wait_for_first_batch(pg: Postgres, purge: subprocess.Popen) -> None:
    """Past the purge's start-up: its first batch is committed."""
    deadline = time.monotonic() + 120
    first = "evt_0" + "1".rjust(25, "0")
    while pg.psql(f"SELECT count(*) FROM event WHERE id = '{first}'") == "1":
        if purge.poll() is not None:
            raise BenchError(f"the purge exited early (exit {purge.returncode})")
        if time.monotonic() > deadline:
            raise BenchError("the purge removed nothing in 120 s")
        time.sleep(0.2)


def report_windows(results: dict[str, list[dict[str, Any]]], header: str,
                   target: float) -> float:
    """Print ingest without and while purging (windows `quiet` and `purging`) under
    `header`; returns the ratio purging / quiet."""
    quiet_rps = statistics.mean(r["rps"] for r in results["quiet"])
    busy_rps = statistics.mean(r["rps"] for r in results["purging"])
    ratio = busy_rps / quiet_rps if quiet_rps else 0.0
    say(f"{header}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for phase, label in (("quiet", "without purge"), ("purging", "while purging")):
        rates = ", ".join(f"{r['rps']:,.0f}" for r in results[phase])
        p99 = statistics.median(r["p99_ms"] for r in results[phase])
        say(f"  {label}: {statistics.mean(r['rps'] for r in results[phase]):8,.0f} req/s "
            f"(windows: {rates}); median p99 {p99:.1f} ms")
    say(f"  ratio: {ratio:.2f} (target ≥ {target})")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="expired events (10M)")
    parser.add_argument("--duration", type=float, default=8.0,
                        help="measured seconds per window (8)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="unmeasured seconds at the start of each window (1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of four windows: quiet, purging, purging, quiet (3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--batch-size", type=int, default=5000, help="purge batch size (5000)")
    parser.add_argument("--share", type=float, default=DEFAULT_SHARE,
                        help=f"purge --share ({DEFAULT_SHARE}, the default of `purge`)")
    parser.add_argument("--finish", action="store_true",
                        help="let the purge finish and check that it removed the whole backlog")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-purge-"))
    pg = Postgres()
    relay: Server | None = None
    purge: subprocess.Popen | None = None
    problems: list[str] = []
    try:
        say("Starting PostgreSQL (fsync on, synchronous_commit on) ...")
        pg.start()
        env = relay_env(pg.url, workdir / "relay-data", 10)
        env["RELAY_METRICS_DIR"] = str(workdir / "metrics")
        env["RELAY_REQUEST_LOG"] = "false"
        token = migrated_with_token(env)
        seed(pg, args.events)

        relay = Server("relay", "relay.asgi:application", env, workdir)
        relay.start()
        secret = secrets.token_hex(32)
        create_source(relay, token, secret)
        body = webhook_body()
        headers = {"Content-Type": "application/json", "User-Agent": "relay-bench/1",
                   SIGNATURE_HEADER: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
        pg.psql("CHECKPOINT")

        say(f"Starting `manage.py purge --batch-size {args.batch_size} --share {args.share:g}` ...")
        purge_log = workdir / "purge.log"
        purge = subprocess.Popen(
            [PYTHON, "manage.py", "purge", "--batch-size", str(args.batch_size),
             "--share", str(args.share)],
            cwd=ROOT, env=env, stdout=open(purge_log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        purge_started = time.monotonic()
        wait_for_first_batch(pg, purge)
        purge.send_signal(signal.SIGSTOP)

        # A B B A: the machine's other load drifts; alternating cancels a linear drift, and
        # the purge is frozen (SIGSTOP) in the quiet windows, not stopped and restarted.
        order = ["quiet", "purging", "purging", "quiet"] * args.rounds
        results: dict[str, list[dict[str, Any]]] = {"quiet": [], "purging": []}
        for number, phase in enumerate(order, 1):
            purge.send_signal(signal.SIGCONT if phase == "purging" else signal.SIGSTOP)
            say(f"Window {number}/{len(order)}: {phase}")
            results[phase].append(
                measure(f"{phase}{number}", relay, pg, args, headers, body, workdir))
        purge.send_signal(signal.SIGCONT)
        purge_running = purge.poll() is None
        remaining = int(pg.psql("SELECT count(*) FROM event WHERE source_slug = 'old'"))
        say(f"  the purge had removed {args.events - remaining:,} events by the end of the windows"
            f"{'' if purge_running else ' and had finished: not every window was under purge'}")
        if args.finish:
            say("Waiting for the purge to finish ...")
            purge.wait()
        else:
            say("Stopping the purge (its open batch rolls back) ...")
            purge.terminate()
            purge.wait()
        purge_seconds = time.monotonic() - purge_started
        tail = purge_log.read_text().strip().splitlines()
        if args.finish and purge.returncode != 0:
            raise BenchError("the purge failed:\n" + "\n".join(tail[-20:]))
        if tail:
            say(f"  {tail[-1]}")
        old_left = int(pg.psql("SELECT count(*) FROM event WHERE source_slug = 'old'"))
        removed = args.events - old_left
        left = pg.psql("SELECT (SELECT count(*) FROM delivery), (SELECT count(*) FROM attempt)")
        if left.split("|") != [str(old_left)] * 2:
            problems.append(f"{old_left:,} expired events left but deliveries, attempts = {left}:"
                            " the purge orphaned or lost rows")
        if args.finish and old_left:
            problems.append(f"the purge finished but {old_left:,} expired events are left")
        every = results["quiet"] + results["purging"]
        for result in every:
            problems += problems_of(result)
        if not purge_running:
            problems.append("the purge ended inside the measured windows: use more --events")

        say()
        ratio = report_windows(
            results, f"Ingest with {args.events:,} expired events, {args.connections} "
            f"connections, {len(order)} windows of {args.duration:g} s, 1 uvicorn worker, "
            "fsync on", TARGET_RATIO)
        if ratio < TARGET_RATIO:
            problems.append(f"MISSED target: ingest while purging / without {ratio:.2f} < "
                            f"{TARGET_RATIO}")
        say(f"  purge (--share {args.share:g}): {removed:,} events (+ deliveries, attempts) in "
            f"{purge_seconds:.0f} s, {removed / purge_seconds:,.0f} events/s counting the "
            f"frozen windows{'' if args.finish else ', stopped after the windows'}")
        say("  every 2xx answer is a stored event: "
            + ("yes" if all(r["rows"] == r["answered_2xx"] for r in every) else "NO"))
        if problems:
            for problem in problems:
                say(f"ERROR {problem}")
            return 1
        return 0
    except BenchError as error:
        say(f"ERROR {error}")
        return 1
    finally:
        if purge is not None and purge.poll() is None:
            purge.kill()
            purge.wait()
        if relay is not None:
            relay.stop()
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

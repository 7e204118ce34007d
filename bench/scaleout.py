"""Delivery throughput with 1 and with 2 dispatcher processes on the same PostgreSQL.

    .venv/bin/python bench/scaleout.py [--events 5000] [--endpoints 4] [--max-in-flight 200]
                                       [--concurrency 200] [--runs 1]

Starts a throwaway PostgreSQL 16 (fsync on), nginx on 127.0.0.1 answering 204 (the
subscriber), and Relay's schema with `--endpoints` endpoints pointing at nginx. For each
dispatcher count (1, then 2) it stores `--events` events straight into the database (as
if ingested while no dispatcher ran), starts `python manage.py dispatch` processes, and
times how long they take to route and deliver the backlog (events × endpoints
deliveries), from the first success until every delivery succeeded. Prints deliveries/s
for both, the ratio, and where the CPU went (dispatchers, PostgreSQL, nginx), measured
with psutil. Checks every delivery succeeded exactly once per (event, endpoint). Exits 1
on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dispatch_common import (
    BenchError,
    Stack,
    bench_main,
    load_average,
    median,
    postgres_cpu_seconds,
    say,
    verdict,
)


def seed_events(stack: Stack, count: int, generation: int) -> None:
    stack.pg.psql("TRUNCATE event, delivery, attempt")
    stack.pg.psql(f"""
        INSERT INTO event (id, source_slug, event_type, received_at, method, query, headers,
                           content_type, size, body)
        SELECT 'evt_{generation}' || lpad(g::text, 25, '0'), NULL, 'bench.scaleout',
               now(), 'POST', '', '{{"content-type": "application/json"}}',
               'application/json', 1024,
               convert_to('{{"n": ' || g || ', "pad": "' || repeat('x', 1000) || '"}}', 'UTF8')
        FROM generate_series(1, {count}) AS g
    """)
    stack.pg.psql("VACUUM ANALYZE event")


def cpu_seconds(stack: Stack, dispatchers: list) -> dict[str, float]:
    assert stack.sink is not None
    return {"dispatchers": sum(process.cpu_seconds() for process in dispatchers),
            "postgres": postgres_cpu_seconds(stack), "nginx": stack.sink.cpu_seconds()}


def run(stack: Stack, dispatchers: int, args: argparse.Namespace,
        generation: int) -> dict[str, Any]:
    expected = args.events * args.endpoints
    seed_events(stack, args.events, generation)
    say(f"{dispatchers} dispatcher(s): {args.events:,} events x {args.endpoints} endpoints = "
        f"{expected:,} deliveries ({load_average()})")
    processes = stack.dispatchers([f"dispatch-{generation}-{number}"
                                   for number in range(dispatchers)])
    try:
        started = time.monotonic()
        first = None
        last_print = started
        before: dict[str, float] = {}
        while True:
            for process in processes:
                process.check_alive()
            done = int(stack.pg.psql("SELECT count(*) FROM delivery WHERE status = 'succeeded'"))
            now = time.monotonic()
            if first is None and done > 0:
                first = now
                before = cpu_seconds(stack, processes)
            if done >= expected:
                break
            if now - last_print >= 2:
                say(f"  {done:,} / {expected:,} delivered")
                last_print = now
            if now - started > args.timeout:
                raise BenchError(f"only {done:,} of {expected:,} delivered in {args.timeout:.0f} s")
            time.sleep(0.2)
        finished = time.monotonic()
        after = cpu_seconds(stack, processes)
    finally:
        for process in processes:
            process.stop()
    seconds = finished - (first or started)
    checks = stack.pg.psql(
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
    return {"dispatchers": dispatchers, "rate": rate, "seconds": seconds,
            "cpu": {name: after[name] - before.get(name, 0.0) for name in after},
            "deliveries": expected, "attempts": attempts, "problems": problems}


async def orchestrate(args: argparse.Namespace) -> int:
    stack = Stack("scaleout", concurrency=args.concurrency, sink=True,
                  extra_env={"RELAY_LOG_LEVEL": "WARNING"})
    results: list[dict[str, Any]] = []
    try:
        stack.start()
        assert stack.sink is not None
        stack.create_endpoints([{
            "url": f"{stack.sink.url()}?n={number}", "max_in_flight": args.max_in_flight,
            "description": f"scaleout {number}",
        } for number in range(args.endpoints)])
        generation = 0
        for _ in range(args.runs):
            for count in (1, 2):
                generation += 1
                results.append(run(stack, count, args, generation))
    finally:
        stack.close()
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
    ratios = [two["rate"] / one["rate"] for one, two in zip(results[::2], results[1::2],
                                                             strict=True)]
    say("  ratio 2 / 1: " + ", ".join(f"{ratio:.2f}" for ratio in ratios)
        + (f" (median {median(ratios):.2f})" if len(ratios) > 1 else ""))
    return verdict([problem for result in results for problem in result["problems"]])


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=5000, help="events per run (5000)")
    parser.add_argument("--endpoints", type=int, default=4, help="endpoints, all to nginx (4)")
    parser.add_argument("--max-in-flight", type=int, default=200,
                        help="each endpoint's max_in_flight (200)")


def main() -> int:
    return bench_main(__doc__, orchestrate, options, concurrency=200, runs=1, timeout=600.0)


if __name__ == "__main__":
    sys.exit(main())

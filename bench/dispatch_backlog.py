"""Backlog: the drain rate with 1,000,000 due deliveries against 1,000, the claim's query
plan in both cases, and the dispatcher's memory throughout.

    .venv/bin/python bench/dispatch_backlog.py [--backlog 1000000] [--measure 20000]

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 (fsync on) with Relay's schema and
nginx answering 204; one endpoint (max_in_flight 1000, no rate limit). `--events` events
(1 KB JSON body, already routed) are inserted once with generate_series; delivery n
carries event n modulo that. Then two cases, each with a fresh `manage.py dispatch`
(concurrency `--concurrency`), its RSS sampled (psutil) every half second:

- shallow: 1,000 due deliveries at a time. A first 1,000 warm the dispatcher up, then
  `--measure` / 1,000 rounds of 1,000 are inserted one after the other, each when the
  last is done (NOTIFY wakes the dispatcher), so the queue never holds more than 1,000.
- deep: `--backlog` due deliveries inserted at once (generate_series), VACUUM ANALYZE;
  the first 1,000 warm the dispatcher up, the next `--measure` are measured; the rest
  are left (the dispatcher is stopped).

Before each case the claim statement of dispatch/queue.py is EXPLAINed (ANALYZE, BUFFERS,
in a transaction rolled back) with the dispatcher's batch size: it must walk the partial
index `delivery_due_idx` in order and stop after its LIMIT (no Seq Scan, no Sort), so its
cost does not grow with the backlog.

Rate of a set of attempts = attempts / (last attempt's end - first attempt's start), from
the attempt records (so both cases are measured the same way; the shallow case sums its
rounds and leaves out the gaps between them). Target: deep / shallow ≥ 0.9, RSS bounded.
Exits 1 on an error or a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dispatch_common import (
    BenchError,
    Dispatcher,
    Stack,
    bench_main,
    connect,
    load_average,
    reset_tables,
    say,
    seed_deliveries,
    seed_events,
    starved,
    verdict,
    wait_for,
)

from dispatch.queue import _CLAIM as CLAIM_SQL

TARGET_RATIO = 0.9
SHALLOW = 1_000
WARMUP = 1_000
RSS_INTERVAL = 0.5


class RssSampler:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):  # the process is going away
                self.dispatcher.rss()
            await asyncio.sleep(RSS_INTERVAL)

    def __enter__(self) -> RssSampler:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()


async def explain_claim(connection: asyncpg.Connection, limit: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the real claim statement, rolled back."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        rows = await connection.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {CLAIM_SQL}",
            "bench-explain", limit, [], 15.0, 30.0, None)
    finally:
        await transaction.rollback()
    return "\n".join(row[0] for row in rows)


def judge_plan(plan: str) -> list[str]:
    """What is wrong with a claim plan over a big table (nothing, if it walks the due index
    and stops at its LIMIT, and reaches every other delivery row by key)."""
    wrong = []
    if "delivery_due_idx" not in plan:
        wrong.append("the claim does not use delivery_due_idx")
    for line in plan.splitlines():
        node = line.strip().removeprefix("->").strip()
        if node.startswith("Seq Scan on delivery"):
            wrong.append(f"the claim scans the delivery table ({node})")
        if node.startswith(("Sort", "Incremental Sort")):
            wrong.append("the claim sorts (it must read the index in order)")
    return wrong


def plan_buffers(plan: str) -> int:
    """Shared buffers the statement touched (hit + read), from its top node."""
    for line in plan.splitlines():
        if "Buffers:" in line:
            numbers = re.findall(r"(?:hit|read)=(\d+)", line)
            return sum(int(n) for n in numbers)
    return 0


def plan_time_ms(plan: str) -> float:
    found = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(found.group(1)) if found else float("nan")


def insert_in_chunks(stack: Stack, make_sql, total: int, what: str,
                     chunk: int = 100_000) -> None:
    """`make_sql(first, count)` for each chunk (each statement stays short)."""
    started = time.monotonic()
    for first in range(1, total + 1, chunk):
        stack.pg.psql(make_sql(first, min(chunk, total - first + 1)))
        done = min(total, first + chunk - 1)
        if total > chunk:
            say(f"    {done:>9,} / {total:,} {what} ({time.monotonic() - started:.0f} s)")


def show_plan(label: str, plan: str) -> None:
    say(f"  claim plan, {label}:")
    for line in plan.splitlines():
        say(f"    | {line}")


async def attempts_rate(connection: asyncpg.Connection, where: str, *args: Any,
                        offset: int = 0, limit: int | None = None) -> tuple[int, float]:
    """(attempts, seconds from the first one's start to the last one's end) of the attempts
    matching `where`, taken in order of start from `offset`."""
    rows = await connection.fetch(
        "SELECT extract(epoch FROM started_at) AS start, duration_ms FROM attempt"
        f" WHERE {where} ORDER BY started_at OFFSET {offset}"
        + (f" LIMIT {limit}" if limit is not None else ""), *args)
    if not rows:
        return 0, 0.0
    first = float(rows[0]["start"])
    last = max(float(row["start"]) + row["duration_ms"] / 1000 for row in rows)
    return len(rows), last - first


async def shallow_case(stack: Stack, endpoint_id: str, args: argparse.Namespace,
                       connection: asyncpg.Connection) -> dict[str, Any]:
    reset_tables(stack, events=False)
    stack.pg.psql(seed_deliveries("dlv_s00_", 1, SHALLOW, [endpoint_id], "evt_"))
    stack.pg.psql("VACUUM ANALYZE delivery")
    plan = await explain_claim(connection, args.concurrency)
    show_plan(f"{SHALLOW:,} due", plan)
    rounds = args.measure // SHALLOW
    say(f"  shallow: {SHALLOW:,} due at a time; a warm-up round, then {rounds} rounds "
        f"({load_average()})")
    dispatcher = stack.dispatcher("dispatch-shallow")
    open_sql = ("SELECT count(*) FROM delivery"
                " WHERE status IN ('pending', 'retrying', 'delivering')")

    async def drained() -> bool:
        return await connection.fetchval(open_sql) == 0

    total, seconds = 0, 0.0
    with RssSampler(dispatcher):
        cpu_before = sched_before = None
        for number in range(rounds + 1):
            if number:
                stack.pg.psql(seed_deliveries(f"dlv_s{number:02d}_", 1, SHALLOW, [endpoint_id],
                                              "evt_", event_first=1 + number * SHALLOW))
                await connection.execute("SELECT pg_notify('relay_due', '')")
            await wait_for(drained, timeout=args.timeout, what=f"round {number} to drain",
                           interval=0.02, alive=dispatcher.check_alive)
            if number == 0:
                cpu_before, sched_before = dispatcher.cpu_seconds(), dispatcher.schedstat()
                continue
            count, span = await attempts_rate(connection, "delivery_id LIKE $1",
                                              f"dlv_s{number:02d}_%")
            total += count
            seconds += span
            if number % 5 == 0 or number == rounds:
                say(f"    round {number:>3}/{rounds}: {count:,} in {span * 1000:.0f} ms; "
                    f"so far {total / seconds:,.0f}/s, RSS {dispatcher.rss() / 2**20:.0f} MiB")
        cpu_after, sched_after = dispatcher.cpu_seconds(), dispatcher.schedstat()
    dispatcher.stop()
    stack.pg.psql(seed_deliveries("dlv_s99_", 1, SHALLOW, [endpoint_id], "evt_"))
    after = await explain_claim(connection, args.concurrency)
    show_plan(f"{SHALLOW:,} due again, after the rounds", after)
    return {"label": "shallow", "due": SHALLOW, "rate": total / seconds, "measured": total,
            "seconds": seconds, "plans": {"before": plan, "after": after},
            "rss": list(dispatcher.rss_samples),
            "dispatcher_us": (cpu_after - cpu_before) / total * 1e6,
            "sched": (sched_after[0] - sched_before[0], sched_after[1] - sched_before[1])}


async def deep_case(stack: Stack, endpoint_id: str, args: argparse.Namespace,
                    connection: asyncpg.Connection) -> dict[str, Any]:
    reset_tables(stack, events=False)
    say(f"  deep: inserting {args.backlog:,} due deliveries (generate_series) ...")
    started = time.monotonic()
    insert_in_chunks(stack, lambda first, count: seed_deliveries(
        "dlv_d_", first, count, [endpoint_id], "evt_", event_first=1 + (first - 1) % args.events,
        event_count=args.events), args.backlog, "deliveries")
    say(f"    inserted in {time.monotonic() - started:.0f} s; VACUUM ANALYZE ...")
    stack.pg.psql("VACUUM ANALYZE delivery")
    stack.pg.psql("CHECKPOINT")
    plan = await explain_claim(connection, args.concurrency)
    show_plan(f"{args.backlog:,} due", plan)
    wanted = WARMUP + args.measure
    say(f"  deep: {args.backlog:,} due; {WARMUP:,} to warm up, then {args.measure:,} "
        f"measured ({load_average()})")
    dispatcher = stack.dispatcher("dispatch-deep")
    marks: dict[str, Any] = {}
    last = [time.monotonic(), 0]
    seen = [0]

    async def enough() -> bool:
        seen[0] = await connection.fetchval("SELECT count(*) FROM attempt")
        if "cpu" not in marks and seen[0] >= WARMUP:
            marks["cpu"], marks["sched"] = dispatcher.cpu_seconds(), dispatcher.schedstat()
            marks["seen"] = seen[0]
        return seen[0] >= wanted

    async def progress() -> str:
        now = time.monotonic()
        rate = (seen[0] - last[1]) / (now - last[0])
        last[0], last[1] = now, seen[0]
        return (f"    {seen[0]:>7,} / {wanted:,} attempts  {rate:7,.0f}/s  RSS "
                f"{dispatcher.rss() / 2**20:.0f} MiB")

    with RssSampler(dispatcher):
        await wait_for(enough, timeout=args.timeout, what="the measured deliveries",
                       progress=progress, interval=0.05, alive=dispatcher.check_alive)
        cpu_after, sched_after = dispatcher.cpu_seconds(), dispatcher.schedstat()
    dispatcher.stop()
    count, seconds = await attempts_rate(connection, "true", offset=WARMUP, limit=args.measure)
    if count < args.measure:
        raise BenchError(f"only {count} attempts after the warm-up")
    measured_cpu = seen[0] - marks["seen"]
    after = await explain_claim(connection, args.concurrency)
    show_plan(f"{args.backlog - seen[0]:,} due, after draining {seen[0]:,}", after)
    return {"label": "deep", "due": args.backlog, "rate": count / seconds, "measured": count,
            "seconds": seconds, "plans": {"before": plan, "after": after},
            "rss": list(dispatcher.rss_samples),
            "dispatcher_us": (cpu_after - marks["cpu"]) / max(measured_cpu, 1) * 1e6,
            "sched": (sched_after[0] - marks["sched"][0], sched_after[1] - marks["sched"][1])}


async def orchestrate(args: argparse.Namespace) -> int:
    stack = Stack("backlog", concurrency=args.concurrency, sink=True)
    sink = stack.sink
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        stack.start()
        [endpoint_id] = stack.create_endpoints([{
            "url": sink.url("/hook"), "description": "backlog", "max_in_flight": 1000}])
        say(f"Inserting {args.events:,} events (1 KB JSON, routed) ...")
        started = time.monotonic()
        insert_in_chunks(stack, lambda first, count: seed_events("evt_", first, count),
                         args.events, "events")
        stack.pg.psql("VACUUM ANALYZE event")
        say(f"  done in {time.monotonic() - started:.0f} s; {load_average()}")
        connection = await connect(stack.url)
        try:
            for case in (shallow_case, deep_case):
                result = await case(stack, endpoint_id, args, connection)
                say(f"  {result['label']}: {result['rate']:,.0f} deliveries/s over "
                    f"{result['measured']:,}; dispatcher {result['dispatcher_us']:.0f} "
                    f"µs/delivery, waited for a CPU {starved(result):.0%}; RSS "
                    f"{min(result['rss']) / 2**20:.0f}–{max(result['rss']) / 2**20:.0f} MiB")
                results.append(result)
        finally:
            await connection.close()
    finally:
        stack.close()

    shallow, deep = results
    ratio = deep["rate"] / shallow["rate"]
    say()
    say(f"Backlog: drain rate at concurrency {args.concurrency}, nginx 204, PostgreSQL fsync on")
    for result in results:
        rss = [value / 2**20 for value in result["rss"]]
        say(f"  {result['due']:>9,} due: {result['rate']:7,.0f} deliveries/s over "
            f"{result['measured']:,} ({result['seconds']:.1f} s of sending); RSS "
            f"start {rss[0]:.0f} MiB, max {max(rss):.0f} MiB, end {rss[-1]:.0f} MiB "
            f"({len(rss)} samples)")
        for when, plan in result["plans"].items():
            say(f"      claim of {args.concurrency} {when} the drain: {plan_buffers(plan):,} "
                f"buffers, {plan_time_ms(plan):.1f} ms")
    for when, plan in deep["plans"].items():
        for wrong in judge_plan(plan):
            problems.append(f"{deep['due']:,} due, {when} the drain: {wrong}")
    say(f"  deep / shallow: {ratio:.2f} (target ≥ {TARGET_RATIO})")
    say(f"  claim plan with {deep['due']:,} due: " + (
        "walks delivery_due_idx in order and stops at its LIMIT, every other delivery row "
        "by key (no Seq Scan, no Sort)" if not problems else "; ".join(problems)))
    growth = max(deep["rss"]) - min(deep["rss"])
    say(f"  dispatcher RSS growth during the deep case: {growth / 2**20:.1f} MiB")
    if growth > 64 * 2**20:
        problems.append(f"the dispatcher's RSS grew by {growth / 2**20:.0f} MiB")
    return verdict(problems, f"{ratio:.2f} < {TARGET_RATIO}" if ratio < TARGET_RATIO else None)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backlog", type=int, default=1_000_000,
                        help="due deliveries in the deep case (1000000)")
    parser.add_argument("--measure", type=int, default=20_000,
                        help="deliveries measured in each case, a multiple of 1000 (20000)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="events the deliveries carry, round-robin (100000)")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.events < args.measure + 2 * SHALLOW:
        parser.error("--events must be at least --measure + 2000")


def main() -> int:
    return bench_main(__doc__, orchestrate, options, concurrency=100, timeout=600.0,
                      check=check)


if __name__ == "__main__":
    sys.exit(main())

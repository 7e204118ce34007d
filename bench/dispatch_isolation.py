"""Isolation: a healthy endpoint's delivery rate with a black-hole and a failing endpoint
beside it, against the same endpoint alone.

    .venv/bin/python bench/dispatch_isolation.py [--deliveries 15000] [--runs 3]

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 (fsync on) with Relay's schema;
nginx (1 worker) answering 204 on `/hook` (the healthy endpoint) and 500 on `/fail` (the
failing endpoint); and, in this process, a black hole: a TCP server that accepts
connections, reads what comes and never answers. Three endpoints are created through the
API, all with the defaults (max_in_flight 10, the default retry schedule) except: the
healthy one may have 1000 in flight, the black hole times out after `--blackhole-timeout`
seconds (10).

Per run, two drains by a fresh `manage.py runrelay` (as `make run` starts it) (concurrency `--concurrency`):

- alone: `--deliveries` due deliveries to the healthy endpoint;
- beside: the same, plus as many to the black hole and as many to the failing endpoint,
  interleaved in the queue (one of each, due at the same moments).

The healthy rate is its deliveries / (first healthy attempt → the database says all of
them succeeded). Prints both rates, the ratio (target ≥ 0.85), and what the bad endpoints
cost meanwhile: their attempts, their circuit state, the dispatcher's slots they held.
Exits 1 on an error or a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dispatch_common import (
    Stack,
    bench_main,
    drain,
    free_port,
    load_average,
    ratio_line,
    reset_tables,
    say,
    seed_due,
    starved,
    statements_report,
    statements_reset,
    verdict,
)

TARGET_RATIO = 0.85
OPEN = ("SELECT count(*) FROM delivery"
        " WHERE endpoint_id = $1 AND status IN ('pending', 'retrying', 'delivering')")
ANY_OPEN = ("SELECT EXISTS (SELECT 1 FROM delivery"
            " WHERE endpoint_id = $1 AND status IN ('pending', 'retrying', 'delivering'))")


class BlackHole:
    """Accepts every connection, reads everything, answers nothing."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "/void") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self._writers.add(writer)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()


async def phase(stack: Stack, label: str, endpoints: dict[str, str], beside: bool,
                args: argparse.Namespace, number: int, hole: BlackHole) -> dict[str, Any]:
    count = args.deliveries
    reset_tables(stack)
    targets = ([endpoints["healthy"], endpoints["blackhole"], endpoints["failing"]] if beside
               else [endpoints["healthy"]])
    total = count * len(targets)
    seed_due(stack, f"r{number}{label[0]}", total, targets)
    say(f"  {label}: {count:,} healthy deliveries"
        + (f" + {count:,} to the black hole + {count:,} to the failing endpoint, interleaved"
           if beside else "") + f" ({load_average()})")
    statements_reset(stack)
    result = await drain(
        stack, f"dispatch-{number}-{label}", total=count, endpoint_ids=[endpoints["healthy"]],
        remaining_sql=OPEN, any_left_sql=ANY_OPEN, remaining_args=[endpoints["healthy"]],
        timeout=args.timeout,
        on_progress=(lambda: f"  black hole: {hole.open} connections open") if beside else None)
    statements_report(stack, count)
    rows = stack.pg.psql(
        "SELECT e.id, e.circuit_opened_at IS NOT NULL, e.consecutive_failures,"
        " (SELECT count(*) FROM attempt a WHERE a.endpoint_id = e.id),"
        " (SELECT count(*) FROM delivery d WHERE d.endpoint_id = e.id"
        "  AND d.status = 'succeeded') FROM endpoint e")
    by_id = {}
    for line in rows.splitlines():
        endpoint_id, opened, failures, attempts, succeeded = line.split("|")
        by_id[endpoint_id] = {"circuit_open": opened == "t", "failures": int(failures),
                              "attempts": int(attempts), "succeeded": int(succeeded)}
    result["endpoints"] = {name: by_id[endpoint_id] for name, endpoint_id in endpoints.items()}
    result["problems"] = []
    healthy = result["endpoints"]["healthy"]
    if healthy["succeeded"] != count or healthy["attempts"] != count:
        result["problems"].append(f"run {number} {label}: healthy endpoint {healthy}; expected "
                                  f"{count} attempts, all succeeded")
    bad = "; ".join(
        f"{name} {state['attempts']} attempts, circuit "
        + ("open" if state["circuit_open"] else "closed")
        for name, state in result["endpoints"].items() if name != "healthy" and beside)
    say(f"  {label}: healthy {result['rate']:,.0f} deliveries/s ({count:,} in "
        f"{result['seconds']:.2f} s), dispatcher {result['dispatcher_us']:.0f} µs/delivery, "
        f"waited for a CPU {starved(result):.0%}" + (f"; meanwhile {bad}" if bad else ""))
    return result


async def orchestrate(args: argparse.Namespace) -> int:
    stack = Stack("isolation", concurrency=args.concurrency, sink=True)
    sink = stack.sink
    hole = BlackHole()
    runs: list[dict[str, Any]] = []
    try:
        stack.start()
        await hole.start()
        say(f"nginx on {sink.url('/')} (204 on /hook, 500 on /fail), black hole on "
            f"{hole.url()}; {load_average()}")
        ids = stack.create_endpoints([
            {"url": sink.url("/hook"), "description": "healthy", "max_in_flight": 1000},
            {"url": hole.url(), "description": "black hole",
             "timeout_seconds": args.blackhole_timeout},
            {"url": sink.url("/fail"), "description": "failing"},
        ])
        endpoints = dict(zip(("healthy", "blackhole", "failing"), ids, strict=True))
        for number in range(1, args.runs + 1):
            say(f"Run {number} of {args.runs}:")
            order = ("alone", "beside") if number % 2 else ("beside", "alone")
            run = {label: await phase(stack, label, endpoints, label == "beside", args,
                                      number, hole) for label in order}
            runs.append(run)
    finally:
        await hole.stop()
        stack.close()

    say()
    say(f"Isolation: healthy endpoint deliveries/s, {args.deliveries:,} per drain, concurrency "
        f"{args.concurrency}, nginx 204; beside a black hole (timeout "
        f"{args.blackhole_timeout:g} s) and a 500 endpoint")
    say(f"{'run':>3} {'alone':>8} {'beside':>8} {'ratio':>6}  {'black hole':>22} "
        f"{'failing':>22}  starved alone/beside")
    ratios = []
    for number, run in enumerate(runs, 1):
        alone, beside = run["alone"], run["beside"]
        ratio = beside["rate"] / alone["rate"]
        ratios.append(ratio)

        def bad(name: str, beside: dict[str, Any] = beside) -> str:
            state = beside["endpoints"][name]
            circuit = "open" if state["circuit_open"] else "closed"
            return f"{state['attempts']:>5} attempts, {circuit:>6}"

        say(f"{number:>3} {alone['rate']:>8,.0f} {beside['rate']:>8,.0f} {ratio:>6.2f}  "
            f"{bad('blackhole'):>22} {bad('failing'):>22}  "
            f"{starved(alone):.0%} / {starved(beside):.0%}")
    missed = ratio_line("beside / alone", ratios, TARGET_RATIO)
    return verdict([p for run in runs for result in run.values() for p in result["problems"]],
                   missed)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=15_000,
                        help="deliveries to the healthy endpoint per drain (15000)")
    parser.add_argument("--blackhole-timeout", type=float, default=10.0,
                        help="the black-hole endpoint's timeout_seconds (10)")


def main() -> int:
    return bench_main(__doc__, orchestrate, options, concurrency=100, runs=3)


if __name__ == "__main__":
    sys.exit(main())

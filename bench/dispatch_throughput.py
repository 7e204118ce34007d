"""Delivery throughput of one dispatcher process to a fast local sink, against raw client
loops at the same concurrency, in the same run.

    .venv/bin/python bench/dispatch_throughput.py [--deliveries 20000] [--concurrency 100]
                                                  [--runs 3] [--duration 5]

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 (fsync on) with Relay's schema, and
nginx answering 204 to everything (1 worker, keep-alive, no access log). Then, per run:

1. Baselines (bench/_dispatch_clients.py), each in its own process on the dispatcher's
   event loop (uvloop), each `--concurrency` tasks POSTing the same 1 KB JSON body to
   nginx for `--duration` seconds after a 1 s warm-up: a raw `aiohttp.ClientSession` loop
   (the ceiling; measured again after the dispatcher, the mean of both is used), a raw
   default `httpx.AsyncClient()` loop, and, for scale, httpx over Relay's aiohttp
   transport (`dispatch.delivery_client.DeliveryTransport`), without Relay's SSRF guard.
2. The dispatcher: `--deliveries` events (the same 1 KB body) and one pending, due
   delivery per event are inserted in SQL, already routed (routing is not measured
   here), all to one endpoint (created through the API) with max_in_flight 1000 and no
   rate limit. `python manage.py dispatch` starts with RELAY_DISPATCH_CONCURRENCY =
   `--concurrency`; the time runs from its first attempt (the attempt's recorded start)
   until the database says every delivery succeeded (polled every 50 ms), so claiming,
   signing, sending and recording every attempt are all inside it.

Prints deliveries/s, the ratios dispatcher / aiohttp (target ≥ 0.35) and dispatcher /
default httpx, the CPU per request or delivery of each (and PostgreSQL's), and how long
the dispatcher waited for a CPU (other load on the machine). Checks that every delivery
succeeded with exactly one attempt. `--profile PREFIX` records the dispatcher with
py-spy. Exits 1 on an error or a missed target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dispatch_common import (
    PYTHON,
    ROOT,
    BenchError,
    Stack,
    bench_main,
    drain,
    load_average,
    median,
    ratio_line,
    reset_tables,
    say,
    seed_due,
    starved,
    verdict,
)

TARGET_RATIO = 0.35
DISPATCHER_LOOP = "uvloop"
"""The event loop `manage.py dispatch` runs on; the baselines run on the same one."""
CLIENTS = ("aiohttp", "httpx", "httpx-aiohttp")


def run_client(client: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    say(f"  {client}: {args.concurrency} tasks, 1 s warm-up + {args.duration:g} s")
    completed = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "_dispatch_clients.py"), "--client", client, "--url", url,
         "--concurrency", str(args.concurrency), "--warmup", "1",
         "--duration", str(args.duration), "--loop", DISPATCHER_LOOP],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=args.duration + 120,
    )
    if completed.returncode != 0:
        raise BenchError(f"the {client} loop failed (exit {completed.returncode})")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["errors"] or set(result["statuses"]) != {"204"}:
        raise BenchError(f"the {client} loop got {result['statuses']} / {result['errors']}")
    say(f"  {client}: {result['rps']:,.0f} req/s "
        f"({result['cpu_us_per_request']:.0f} µs CPU per request)")
    return result


async def run_dispatcher(stack: Stack, endpoint_id: str, args: argparse.Namespace,
                         number: int) -> dict[str, Any]:
    count = args.deliveries
    reset_tables(stack)
    seed_due(stack, f"r{number}", count, [endpoint_id])
    say(f"  dispatcher: {count:,} due deliveries inserted (pre-routed), starting "
        f"`manage.py runrelay` as `make run` does (concurrency {args.concurrency} per "
        "dispatcher)")
    result = await drain(
        stack, f"dispatch-{number}", total=count, endpoint_ids=[endpoint_id],
        remaining_sql="SELECT count(*) FROM delivery"
                      " WHERE status IN ('pending', 'retrying', 'delivering')",
        any_left_sql="SELECT EXISTS (SELECT 1 FROM delivery"
                     " WHERE status IN ('pending', 'retrying', 'delivering'))",
        timeout=args.timeout, profile=f"{args.profile}.{number}.txt" if args.profile else None)
    checks = stack.pg.psql(
        "SELECT (SELECT count(*) FROM delivery WHERE status = 'succeeded'),"
        " (SELECT count(*) FROM attempt), (SELECT count(*) FROM attempt WHERE status_code = 204)")
    succeeded, attempts, ok = (int(part) for part in checks.split("|"))
    result["problems"] = []
    if not succeeded == attempts == ok == count:
        result["problems"].append(f"run {number}: {succeeded} succeeded, {attempts} attempts, "
                                  f"{ok} answered 204; expected {count} each")
    say(f"  dispatcher: {result['rate']:,.0f} deliveries/s ({count:,} in {result['seconds']:.2f}"
        f" s); CPU per delivery: dispatcher {result['dispatcher_us']:.0f} µs, PostgreSQL "
        f"{result['postgres_us']:.0f} µs; waited for a CPU {starved(result):.0%} of the time")
    return result


async def orchestrate(args: argparse.Namespace) -> int:
    stack = Stack("throughput", concurrency=args.concurrency, sink=True)
    sink = stack.sink
    runs: list[dict[str, Any]] = []
    try:
        stack.start()
        say(f"nginx (204) on {sink.url()}; {load_average()}")
        [endpoint_id] = stack.create_endpoints([{
            "url": sink.url("/hook"), "description": "throughput", "max_in_flight": 1000,
        }])
        others = {"all": CLIENTS[1:], "aiohttp": (), "none": ()}[args.baselines]
        for number in range(1, args.runs + 1):
            say(f"Run {number} of {args.runs} ({load_average()}):")
            run: dict[str, Any] = {"load": load_average()}
            if args.baselines != "none":
                run["aiohttp"] = [run_client("aiohttp", sink.url("/baseline"), args)]
            for client in others:
                run[client] = run_client(client, sink.url("/baseline"), args)
            run["dispatcher"] = await run_dispatcher(stack, endpoint_id, args, number)
            if args.baselines != "none":
                say("  aiohttp again, after the dispatcher (the ceiling is the mean of both):")
                run["aiohttp"].append(run_client("aiohttp", sink.url("/baseline"), args))
            runs.append(run)
    finally:
        stack.close()
    return report(runs, args)


def ceiling(run: dict[str, Any]) -> tuple[float, float]:
    """(req/s, CPU µs per request) of the aiohttp loop: the mean of its two measurements."""
    measured = run["aiohttp"]
    return (statistics.mean(m["rps"] for m in measured),
            statistics.mean(m["cpu_us_per_request"] for m in measured))


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> int:
    say()
    say(f"Delivery throughput, concurrency {args.concurrency}, 1 KB POSTs to nginx (204) on "
        f"127.0.0.1, {DISPATCHER_LOOP} loop, PostgreSQL fsync on, {args.deliveries:,} "
        "deliveries per run")
    say(f"{'run':>3} {'aiohttp':>8} {'µs':>4} {'httpx':>6} {'µs':>5} {'httpx+aio':>9} {'µs':>4} "
        f"{'dispatcher':>10} {'µs':>4} {'PG µs':>5} {'starved':>7} {'/aiohttp':>8} "
        f"{'/httpx':>6}  load before the run")

    def cell(run: dict[str, Any], client: str, width: int, cpu_width: int) -> str:
        if client not in run:
            return f"{'-':>{width}} {'-':>{cpu_width}}"
        return (f"{run[client]['rps']:>{width},.0f} "
                f"{run[client]['cpu_us_per_request']:>{cpu_width}.0f}")

    for number, run in enumerate(runs, 1):
        d = run["dispatcher"]
        if "aiohttp" in run:
            rps, cpu = ceiling(run)
            aio = f"{rps:>8,.0f} {cpu:>4.0f}"
            ratio = f"{d['rate'] / rps:>8.2f}"
        else:
            aio, ratio = f"{'-':>8} {'-':>4}", f"{'-':>8}"
        ratio_httpx = (f"{d['rate'] / run['httpx']['rps']:>5.1f}×" if "httpx" in run
                       else f"{'-':>6}")
        say(f"{number:>3} {aio} {cell(run, 'httpx', 6, 5)} {cell(run, 'httpx-aiohttp', 9, 4)} "
            f"{d['rate']:>10,.0f} {d['dispatcher_us']:>4.0f} {d['postgres_us']:>5.0f} "
            f"{starved(d):>7.0%} {ratio} {ratio_httpx}  {run['load']}")
    say("µs: CPU per request (baselines) or per delivery (dispatcher, and PostgreSQL for it);")
    say("starved: share of the time the dispatcher was ready to run but waited for a CPU")
    say("(other load on the machine); aiohttp: mean of a measurement before and after the")
    say("dispatcher's.")
    say(f"dispatcher RSS at most {max(run['dispatcher']['rss_mib'] for run in runs):.0f} MiB")
    problems = [problem for run in runs for problem in run["dispatcher"]["problems"]]
    missed = None
    if all("aiohttp" in run for run in runs):
        ratios = [run["dispatcher"]["rate"] / ceiling(run)[0] for run in runs]
        cpu_ratios = [ceiling(run)[1] / run["dispatcher"]["dispatcher_us"] for run in runs]
        missed = ratio_line("dispatcher / aiohttp", ratios, TARGET_RATIO)
        say(f"CPU per request aiohttp / per delivery dispatcher: median "
            f"{median(cpu_ratios):.2f} (what the ratio would be if both got the same CPU)")
    if all("httpx" in run for run in runs):
        ratios = [run["dispatcher"]["rate"] / run["httpx"]["rps"] for run in runs]
        say(f"dispatcher / default httpx: median {median(ratios):.1f}×")
    return verdict(problems, missed)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=20_000,
                        help="deliveries the dispatcher drains per run (20000)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="measured seconds of each baseline loop (5)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="record the dispatcher with py-spy into PREFIX.<run>.txt (raw)")
    parser.add_argument("--baselines", choices=["all", "aiohttp", "none"], default="all",
                        help="which baselines to run (all; `none` only for profiling)")


def main() -> int:
    return bench_main(__doc__, orchestrate, options, concurrency=100, runs=3)


if __name__ == "__main__":
    sys.exit(main())

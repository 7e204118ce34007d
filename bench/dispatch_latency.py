"""End-to-end latency, ingest to subscriber receipt, at a steady event rate to 3 endpoints.

    .venv/bin/python bench/dispatch_latency.py [--rate 200] [--duration 30] [--warmup 3]

Starts, on 127.0.0.1 only: a throwaway PostgreSQL 16 (fsync on) with Relay's schema,
`manage.py runrelay` as `make run` starts it (its default web workers and dispatchers;
`--web-workers N --dispatchers M` for others), and, in this process, a subscriber sink
(aiohttp, answers 204, notes the time each request arrives with its `webhook-id` and
path) and an open-loop sender.

The sender posts a signed 1 KB webhook (an `hmac` source) to `/in/bench` `--rate` times a
second, on schedule whatever the answers do (at most 1,000 unanswered), for `--warmup`
seconds, then `--duration` measured seconds. Three endpoints (`/a`, `/b`, `/c` on the
sink) take every event. Latency of one delivery = the time the sink received it minus the
time the sender started the POST of its event (one clock: same process).

Baseline, same run: the same sender posts the same body straight to the sink at the same
rate, three requests per tick (one per path): the network + sink + sender floor.

`--common-path`: the path real providers take, with bad subscribers among the good: the
source is a `standard_webhooks` one (verified, deduplicated on a fresh `webhook-id` per
event), and two more endpoints take every event beside the three measured: one always
answering 500 (its circuit opens, its deliveries are parked) and a black hole (never
answers; its requests run into the delivery timeout).

Prints p50, p99 and max for both and the ratios, where the time goes (ingest → routed →
first attempt → received, from the stored timestamps), and checks that every event was
delivered exactly once to each endpoint. Target: p99 ≤ 50 ms. Exits 1 on an error or a
missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dispatch_common import (
    BODY_JSON,
    BenchError,
    Stack,
    bench_main,
    connect,
    free_port,
    http_json,
    load_average,
    percentile,
    say,
    statements_report,
    statements_reset,
    verdict,
    wait_for,
)
from ingest_dedup import sign

TARGET_P99_MS = 50.0
PATHS = ("/a", "/b", "/c")
BAD_PATHS = {"/failing": "always 500", "/blackhole": "never answers"}
MAX_UNANSWERED = 1_000
SIGNATURE_HEADER = "x-signature"


class Sink:
    """Answers 204 and notes (webhook-id, path) → arrival time (perf_counter seconds)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[tuple[str, str], float] = {}
        self.duplicates = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        await request.read()
        if request.path == "/failing":
            return web.Response(status=500)
        if request.path == "/blackhole":
            await asyncio.Event().wait()
        key = (request.headers.get("webhook-id", ""), request.path)
        if key in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[key] = arrived
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class OpenLoop:
    """Starts one task per tick on a fixed schedule (never waits for answers)."""

    def __init__(self, rate: float, label: str) -> None:
        self.rate = rate
        self.label = label
        self.unanswered = 0
        self.skipped = 0
        self.errors: list[str] = []
        self.answered = 0

    async def run(self, seconds: float, fire) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks: set[asyncio.Task] = set()
        next_progress = start + 1.0
        last_answered = 0
        for tick in itertools.count():
            due = start + tick / self.rate
            if due - start >= seconds:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.unanswered >= MAX_UNANSWERED:
                self.skipped += 1
                continue
            task = loop.create_task(self._one(fire, tick))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if loop.time() >= next_progress:
                say(f"    {self.label}: t={loop.time() - start:4.1f}s "
                    f"{self.answered - last_answered:5d} answered in the last second, "
                    f"{self.unanswered} waiting")
                last_answered = self.answered
                next_progress += 1.0
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    async def _one(self, fire, tick: int) -> None:
        self.unanswered += 1
        try:
            await fire(tick)
            self.answered += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.unanswered -= 1


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": "relay-bench/1",
            SIGNATURE_HEADER: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


async def through_relay(args: argparse.Namespace, web_base: str, secret: str, sink: Sink,
                        session: aiohttp.ClientSession) -> dict[str, Any]:
    body = BODY_JSON.encode()
    fixed = signed_headers(secret, body)
    sent: dict[str, float] = {}
    measuring = [False]
    statuses: dict[int, int] = {}

    async def fire(tick: int) -> None:
        started = time.perf_counter()
        headers = fixed
        if args.common_path:
            headers = {"content-type": "application/json", "user-agent": "relay-bench/1",
                       **sign(secret, f"msg_{tick}_{secrets.token_hex(6)}", body)}
        async with session.post(f"{web_base}/in/bench", data=body, headers=headers) as answer:
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            payload = await answer.json()
        if answer.status != 202:
            raise BenchError(f"ingest answered {answer.status} {payload}")
        if measuring[0]:
            sent[payload["id"]] = started

    say(f"  through Relay: {args.warmup:g} s warm-up, then {args.duration:g} s at "
        f"{args.rate:g} events/s to {len(PATHS)} endpoints")
    loop = await warm_up_then_measure(args, "relay", fire, measuring)
    expected = {(event_id, path) for event_id in sent for path in PATHS}

    async def all_arrived() -> bool:
        return expected <= sink.arrivals.keys()

    with contextlib.suppress(BenchError):  # what never arrived is counted below
        await wait_for(all_arrived, timeout=30, what="every delivery to reach the sink")
    return {**arrivals(sink, sent, loop), "events": len(sent), "statuses": statuses,
            "sent": sent}


async def straight_to_sink(args: argparse.Namespace, sink: Sink,
                           session: aiohttp.ClientSession) -> dict[str, Any]:
    body = BODY_JSON.encode()
    sent: dict[str, float] = {}
    measuring = [False]

    async def fire(tick: int) -> None:
        webhook_id = f"base_{tick}_{secrets.token_hex(4)}"
        started = time.perf_counter()
        if measuring[0]:
            sent[webhook_id] = started

        async def one(path: str) -> None:
            async with session.post(sink.url(path), data=body, headers={
                    "content-type": "application/json", "webhook-id": webhook_id}) as answer:
                await answer.read()

        await asyncio.gather(*(one(path) for path in PATHS))

    say(f"  baseline, straight to the sink: {args.warmup:g} s warm-up, then "
        f"{args.duration:g} s at {args.rate:g} ticks/s x {len(PATHS)} requests")
    loop = await warm_up_then_measure(args, "baseline", fire, measuring)
    return arrivals(sink, sent, loop)


async def warm_up_then_measure(args: argparse.Namespace, label: str, fire,
                               measuring: list[bool]) -> OpenLoop:
    """`fire` on schedule for the warm-up, then (`measuring[0]` set) the measured time."""
    loop = OpenLoop(args.rate, label)
    await loop.run(args.warmup, fire)
    measuring[0] = True
    await loop.run(args.duration, fire)
    return loop


def arrivals(sink: Sink, sent: dict[str, float], loop: OpenLoop) -> dict[str, Any]:
    """Latency (ms) of every (id, path) that arrived, of the ids sent while measuring."""
    expected = {(webhook_id, path) for webhook_id in sent for path in PATHS}
    latencies = [(sink.arrivals[key] - sent[key[0]]) * 1000 for key in expected
                 if key in sink.arrivals]
    start = min(sent.values(), default=0.0)
    by_second: dict[int, list[float]] = {}
    for key in expected:
        if key in sink.arrivals:
            by_second.setdefault(int(sent[key[0]] - start), []).append(
                (sink.arrivals[key] - sent[key[0]]) * 1000)
    return {"latencies": latencies, "by_second": by_second, "expected": len(expected),
            "missing": len(expected - sink.arrivals.keys()), "errors": loop.errors,
            "skipped": loop.skipped}


async def stage_breakdown(stack: Stack, sent: dict[str, float],
                          measured: list[str]) -> dict[str, list[float]]:
    """Milliseconds per stage, from the stored timestamps (database and dispatcher clocks
    are the same machine's): received → routed (the delivery made), routed → first attempt
    starts, attempt."""
    connection = await connect(stack.url)
    try:
        rows = await connection.fetch("""
            SELECT extract(epoch FROM d.created_at - e.received_at) * 1000 AS route_ms,
                   extract(epoch FROM a.started_at - d.created_at) * 1000 AS claim_ms,
                   a.duration_ms AS send_ms
            FROM event e JOIN delivery d ON d.event_id = e.id
            JOIN attempt a ON a.delivery_id = d.id AND a.number = 1
            WHERE e.id = ANY($1::text[]) AND d.endpoint_id = ANY($2::text[])""",
            list(sent), measured)
    finally:
        await connection.close()
    return {name: [float(row[name]) for row in rows] for name in ("route_ms", "claim_ms",
                                                                  "send_ms")}


def figures(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5):6.1f} ms, p99 {percentile(values, 0.99):6.1f} ms, "
            f"max {max(values, default=float('nan')):6.1f} ms")


async def orchestrate(args: argparse.Namespace) -> int:
    stack = Stack("latency", concurrency=args.concurrency)
    sink = Sink()
    problems: list[str] = []
    try:
        stack.start()
        await sink.start()
        say("Starting Relay as `make run` does (`manage.py runrelay`: web workers and "
            "dispatchers) ...")
        relay = stack.runrelay("runrelay")
        dispatcher = relay
        if args.common_path:
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            verification = {"kind": "standard_webhooks", "secret": secret}
        else:
            secret = secrets.token_hex(32)
            verification = {"kind": "hmac", "secret": secret, "header": SIGNATURE_HEADER,
                            "algorithm": "sha256", "encoding": "hex"}
        status, answer = http_json("POST", f"{relay.base}/api/v1/sources", {
            "slug": "bench", "name": "latency", "verification": verification,
        }, headers={"Authorization": f"Bearer {stack.token}"})
        if status != 201:
            raise BenchError(f"creating the source failed: {status} {answer}")
        extra = {"max_in_flight": args.max_in_flight} if args.max_in_flight else {}
        measured = stack.create_endpoints([
            {"url": sink.url(path), "description": f"latency {path}", **extra}
            for path in PATHS], web=relay)
        if args.common_path:
            stack.create_endpoints([{"url": sink.url(path), "description": what}
                                    for path, what in BAD_PATHS.items()], web=relay)
        say(f"  {load_average()}")
        connector = aiohttp.TCPConnector(limit=args.connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            statements_reset(stack)
            relayed = await through_relay(args, relay.base, secret, sink, session)
            statements_report(stack, max(len(relayed["latencies"]), 1))
            relay.check_alive()
            dispatcher.check_alive()
            load_relay = load_average()
            floor = await straight_to_sink(args, sink, session)
            load_floor = load_average()
        stages = await stage_breakdown(stack, relayed["sent"], measured)
        checks = await count_deliveries(stack)
    finally:
        await sink.stop()
        stack.close()

    say()
    say(f"End-to-end latency at {args.rate:g} events/s x {len(PATHS)} endpoints, "
        f"{args.duration:g} s measured, 1 KB signed webhooks, PostgreSQL fsync on")
    if args.common_path:
        say("  common path: standard_webhooks source deduplicating on webhook-id; beside the "
            "3 measured endpoints, " + " and ".join(
                f"{path} ({what})" for path, what in BAD_PATHS.items()) + " take every event")
    say(f"  through Relay:        {figures(relayed['latencies'])}  "
        f"({len(relayed['latencies']):,} deliveries of {relayed['events']:,} events; "
        f"{load_relay})")
    say(f"  straight to the sink: {figures(floor['latencies'])}  "
        f"({len(floor['latencies']):,} requests; {load_floor})")
    p50, p99 = (percentile(relayed["latencies"], f) for f in (0.5, 0.99))
    b50, b99 = (percentile(floor["latencies"], f) for f in (0.5, 0.99))
    say(f"  ratio Relay / straight: p50 {p50 / b50:.1f}x, p99 {p99 / b99:.1f}x")
    seconds = sorted(relayed["by_second"].items(),
                     key=lambda item: -percentile(item[1], 0.99))[:3]
    say("  slowest seconds (p99 of the deliveries of events sent then): " + ", ".join(
        f"t={second} s {percentile(values, 0.99):.0f} ms" for second, values in seconds))
    say("  where the time goes (stored timestamps, first attempts):")
    say(f"    ingest stored → routed into deliveries: {figures(stages['route_ms'])}")
    say(f"    routed → attempt started (claim):       {figures(stages['claim_ms'])}")
    say(f"    attempt (request to answer):            {figures(stages['send_ms'])}")
    say(f"  deliveries in the database: {checks['deliveries']:,} for "
        f"{checks['events']:,} events, {checks['succeeded']:,} succeeded, "
        f"{checks['attempts']:,} attempts; duplicates at the sink: {sink.duplicates}")

    for name, result in (("relay", relayed), ("baseline", floor)):
        if result["missing"]:
            problems.append(f"{name}: {result['missing']} of {result['expected']} deliveries "
                            "never reached the sink")
        if result["errors"]:
            problems.append(f"{name}: {len(result['errors'])} errors, e.g. {result['errors'][:3]}")
        if result["skipped"]:
            problems.append(f"{name}: {result['skipped']} sends skipped ({MAX_UNANSWERED} "
                            "unanswered): the offered rate was not sustained")
    endpoints = len(PATHS) + (len(BAD_PATHS) if args.common_path else 0)
    if checks["deliveries"] != checks["events"] * endpoints:
        problems.append(f"{checks['deliveries']} deliveries for {checks['events']} events x "
                        f"{endpoints} endpoints")
    if p99 <= TARGET_P99_MS:
        say(f"target p99 ≤ {TARGET_P99_MS:g} ms: met ({p99:.1f} ms)")
    return verdict(problems, f"p99 {p99:.1f} ms > {TARGET_P99_MS:g} ms"
                   if p99 > TARGET_P99_MS else None)


async def count_deliveries(stack: Stack) -> dict[str, int]:
    connection = await connect(stack.url)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM event) AS events,"
            " (SELECT count(*) FROM delivery) AS deliveries,"
            " (SELECT count(*) FROM delivery WHERE status = 'succeeded') AS succeeded,"
            " (SELECT count(*) FROM attempt) AS attempts")
    finally:
        await connection.close()
    return dict(row)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (200)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds (30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (3)")
    parser.add_argument("--connections", type=int, default=64,
                        help="the sender's connection limit (64)")
    parser.add_argument("--common-path", action="store_true",
                        help="a deduplicating standard_webhooks source, and a failing endpoint "
                             "and a black hole beside the three measured")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="the endpoints' max_in_flight (default: the endpoint default)")


def main() -> int:
    return bench_main(__doc__, orchestrate, options, concurrency=200, timeout=None)


if __name__ == "__main__":
    sys.exit(main())

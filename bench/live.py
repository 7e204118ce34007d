"""The cost of being watched: Relay at 1,000 events/s with and without 20 live clients.

    .venv/bin/python bench/live.py [--mode pipeline|bus] [--rate 1000] [--clients 20]
                                   [--duration 15] [--warmup 3] [--durable]

Starts, all on 127.0.0.1: a throwaway PostgreSQL 16 (fsync off unless --durable: this
measures the live stream, not the disk), a redis-server, and Relay's web process (uvicorn,
1 worker, RELAY_REDIS_URL set: the production channel layer). Two phases with the same
load, first with nobody watching, then with `--clients` WebSocket clients on /ws/live
(in their own process; two of them decode every frame, the others only count).

- `pipeline` (default): a dispatcher process (`manage.py dispatch`) and a subscriber sink
  (answers 200; its endpoint allows 200 requests in flight) too; `--rate` webhooks/s
  posted to `/in/bench` (open loop), each delivered to the sink, each making three live
  messages (event.received, delivery.attempted, delivery.succeeded). Throughput: the
  phase's deliveries over the time from its first webhook to its last delivery (backlog
  included). Latency: from the sink's answer (the attempt's completion) to a client
  receiving that delivery's delivery.succeeded; a sampled delivery no client saw before
  the watchers stopped counts as infinitely late.
- `bus`: the live path alone, for machines that cannot run the whole pipeline at that
  rate: another process publishes `--rate` events/s as those three messages through
  kernel.bus and Redis, while a load generator posts webhooks to the web process at full
  speed (`--connections`). Throughput: the web process's ingest req/s. Latency: from
  publish() to a client receiving the message.

The load generator (this process), the sink and the watchers share the two cores with
Relay, so they are written to be cheap: protocol callbacks over httptools' C parser for
the generator and the sink (tens of µs of CPU per webhook, not hundreds as with a client
library), and watchers that count without decoding.

Prints per phase the rates, the CPU per process (share of a core, and µs per webhook;
`bench` is the generator, `machine` everything on the machine, other work included), the
load average, the live messages per second reaching the clients and the latency (p50,
p99), then the ratio watched / unwatched throughput.
Targets: p99 ≤ 250 ms, ratio ≥ 0.95; exits 1 on a missed target. Progress every second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

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

TARGET_P99_MS = 250.0
MAX_IN_FLIGHT = 1_000
"""The open-loop generator holds back beyond this many unanswered webhooks."""
TARGET_RATIO = 0.95
SAMPLE_TAIL = frozenset("0123")
"""A delivery is sampled for latency when its id ends in one of these (1 in 8)."""
BODY = json.dumps({"type": "order.paid", "data": {"object": {"id": "ord_1", "amount": 4200,
                                                             "currency": "eur"}}}).encode()


def say(line: str = "") -> None:
    print(line, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# --- the sink: its own process -----------------------------------------------------------------


class SinkConnection(asyncio.Protocol):
    """The subscriber: answers every webhook 200 and notes when. Plain protocol code over
    httptools' C parser, so that it takes little of the two cores it shares with Relay."""

    def __init__(self, answered: list[tuple[str, float]]) -> None:
        import httptools

        self.answered = answered
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.delivery = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.delivery = b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-relay-delivery-id":
            self.delivery = value

    def on_message_complete(self) -> None:
        status, body = b"200 OK", b"ok"
        if self.url == b"/hook":
            self.answered.append((self.delivery.decode(), time.time()))
        elif self.url == b"/_records":
            body = json.dumps(self.answered).encode()
            self.answered.clear()
        elif self.url == b"/_count":
            body = str(len(self.answered)).encode()
        else:
            status, body = b"404 Not Found", b"not found"
        keep_alive = self.parser.should_keep_alive()
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                             + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n" + body)
        if not keep_alive:
            self.transport.close()


async def run_sink(port: int) -> None:
    answered: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SinkConnection(answered), "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


# --- the publisher (bus mode): synthetic live messages through kernel.bus and Redis ------------------


async def run_publisher(rate: int, seconds: float) -> None:
    """`rate` events/s, each as event.received + delivery.attempted + delivery.succeeded,
    stamped with the time they were published (`published_at`, bench only)."""
    import django

    django.setup()
    from kernel.bus import bus, publish
    from kernel.ids import new_id

    bus.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (elapsed := loop.time() - start) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            sent += 1
            event_id, delivery_id = new_id("evt"), new_id("dlv")
            publish({"type": "event.received", "event": {
                "id": event_id, "source": "bench", "event_type": "order.paid",
                "received_at": "2026-01-01T00:00:00+00:00", "size": len(BODY)}})
            delivery = {"id": delivery_id, "event_id": event_id, "endpoint_id": "ep_bench",
                        "status": "succeeded", "attempt": 1, "status_code": 200,
                        "duration_ms": 3.0, "error": None, "next_attempt_at": None,
                        "published_at": time.time()}
            publish({"type": "delivery.attempted", "delivery": delivery})
            publish({"type": "delivery.succeeded", "delivery": delivery})
        await asyncio.sleep(0.005)
    await bus.stop()
    print(json.dumps({"published": sent, "seconds": seconds, "sent": bus.sent,
                      "dropped": bus.dropped_total}), flush=True)


# --- the watchers: N WebSocket clients in their own process ------------------------------------------

PARSING_CLIENTS = 2
"""Clients that decode every frame (types, latency); the others count items without
decoding, so that the watchers take less CPU from the server they share the machine with."""


def count_cheaply(text: str, stats: dict[str, Any]) -> None:
    items = text.count('{"type":"')
    if text.startswith('{"type":"batch"'):
        items -= 1
        tail = text.rfind('"dropped":')
        if tail > text.rfind("]"):
            stats["dropped"] += int(text[tail + 10:-1])
    stats["items"] += items


async def run_watchers(url: str, clients: int) -> None:
    """Connect, say "ready" on stdout, count until SIGTERM, then print one JSON line."""
    import aiohttp
    import orjson

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stats = [{"items": 0, "frames": 0, "dropped": 0, "by_type": {}} for _ in range(clients)]
    samples: dict[str, list[float]] = {}
    stamped: list[float] = []

    async def watch(session: aiohttp.ClientSession, index: int, ready: asyncio.Event) -> None:
        mine = stats[index]
        parse = index < PARSING_CLIENTS
        async with session.ws_connect(url, max_msg_size=0) as socket:
            ready.set()
            async for frame in socket:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                at = time.time()
                mine["frames"] += 1
                if not parse:
                    count_cheaply(frame.data, mine)
                    continue
                message = orjson.loads(frame.data)
                if message.get("type") == "batch":
                    items = message["items"]
                    mine["dropped"] += message.get("dropped", 0)
                else:
                    items = [message]
                mine["items"] += len(items)
                by_type = mine["by_type"]
                for item in items:
                    kind = item.get("type")
                    by_type[kind] = by_type.get(kind, 0) + 1
                    if kind == "delivery.succeeded":
                        delivery = item["delivery"]
                        if delivery["id"][-1] not in SAMPLE_TAIL:
                            continue
                        if "published_at" in delivery:
                            stamped.append((at - delivery["published_at"]) * 1000)
                        else:
                            samples.setdefault(delivery["id"], []).append(at)

    async with aiohttp.ClientSession() as session:
        readies = [asyncio.Event() for _ in range(clients)]
        tasks = [asyncio.create_task(watch(session, n, readies[n])) for n in range(clients)]
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 30)
        print("ready", flush=True)
        last = 0
        while not stop.is_set():
            with_timeout = asyncio.create_task(stop.wait())
            await asyncio.wait([with_timeout], timeout=1.0)
            total = sum(s["items"] for s in stats)
            print(f"    watchers: {total - last:8,d} live messages/s to {clients} clients",
                  file=sys.stderr, flush=True)
            last = total
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"clients": stats, "samples": samples, "stamped": stamped}), flush=True)


# --- the load: open loop, in the main process --------------------------------------------------------

CONNECTIONS = 128
"""Keep-alive connections of the open-loop generator, each with one webhook in flight."""


class Poster(asyncio.Protocol):
    """One keep-alive connection of the generator: posts the webhook, parses the answer."""

    def __init__(self, load: OpenLoad) -> None:
        import httptools

        self.load = load
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def post(self) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(self.load.request)

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.load.errors.append(f"bad response: {exc}")
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        self.busy = False
        self.load.answered(self, self.parser.get_status_code(), self.parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class OpenLoad:
    """Webhooks posted at a fixed rate whatever the answers (open loop) over a pool of
    keep-alive connections: a due webhook leaves on an idle connection, else waits for one;
    beyond `max_in_flight` unanswered webhooks it is not sent (`held_back`). Callbacks and
    httptools instead of a client library: a few µs of CPU per webhook, so that the
    generator takes little of the machine it shares with Relay."""

    def __init__(self, url: str, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        from urllib.parse import urlsplit

        from _loadgen import build_request

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = build_request(self.host, self.port, parts.path,
                                     {"content-type": "application/json"}, BODY)
        self.max_in_flight = max_in_flight
        self.idle: deque[Poster] = deque()
        self.busy = 0
        self.queued = 0
        self.held_back = 0
        self.statuses: dict[int, int] = {}
        self.accepted_at: list[float] = []
        self.errors: list[str] = []
        self.closing = False
        self.quiet = asyncio.Event()
        """Set whenever no webhook is in flight."""

    @property
    def in_flight(self) -> int:
        return self.busy + self.queued

    async def open(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, poster = await loop.create_connection(lambda: Poster(self), self.host, self.port)
            self._ready(poster)

    def offer(self, count: int) -> None:
        for _ in range(count):
            if self.idle:
                self.busy += 1
                self.idle.popleft().post()
            elif self.in_flight < self.max_in_flight:
                self.queued += 1
            else:
                self.held_back += 1

    def _ready(self, poster: Poster) -> None:
        if self.queued and not self.closing:
            self.queued -= 1
            self.busy += 1
            poster.post()
        else:
            self.idle.append(poster)

    def answered(self, poster: Poster, status: int, keep_alive: bool) -> None:
        self.busy -= 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 202:
            self.accepted_at.append(time.time())
        if keep_alive:
            self._ready(poster)
        elif poster.transport is not None:
            poster.transport.close()
        if not self.in_flight:
            self.quiet.set()

    def lost(self, poster: Poster) -> None:
        if poster.busy:
            poster.busy = False
            self.busy -= 1
            self.statuses[0] = self.statuses.get(0, 0) + 1
            if not self.in_flight:
                self.quiet.set()
        if poster in self.idle:
            self.idle.remove(poster)
        if not self.closing:
            asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        try:
            await self.open(1)
        except OSError as exc:
            self.errors.append(f"cannot connect: {exc!r}")

    def close(self) -> None:
        self.closing = True
        for poster in self.idle:
            if poster.transport is not None:
                poster.transport.close()


async def offer_load(url: str, rate: int, seconds: float, progress_label: str,
                     sink_count_url: str) -> dict[str, Any]:
    load = OpenLoad(url)
    await load.open(CONNECTIONS)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    next_report = start + 1.0
    reported = (0, 0)
    counting: asyncio.Task | None = None
    while (now := loop.time()) < start + seconds:
        due = int((now - start) * rate) - sent
        load.offer(due)
        sent += due
        if counting is not None and counting.done():
            sink_total = counting.result()[1]
            accepted = len(load.accepted_at)
            say(f"    {progress_label}: t={now - start:4.1f}s offered {sent:7,d}, "
                f"accepted {accepted - reported[0]:5,d}/s, delivered {sink_total - reported[1]:5,d}/s"
                f", in flight {load.in_flight}")
            reported = (accepted, sink_total)
            counting = None
        if now >= next_report and counting is None:
            counting = loop.create_task(asyncio.to_thread(http_json, "GET", sink_count_url))
            next_report += 1.0
        await asyncio.sleep(0.002)
    if load.in_flight:
        load.quiet.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.quiet.wait(), 30)
    load.close()
    if counting is not None:
        await counting
    if load.held_back:
        say(f"    {progress_label}: {load.held_back:,} webhooks not sent: {MAX_IN_FLIGHT:,} were "
            "already waiting for an answer (the server could not keep up)")
    return {"sent": sent, "statuses": load.statuses, "accepted_at": load.accepted_at,
            "errors": load.errors, "held_back": load.held_back}


# --- orchestration ----------------------------------------------------------------------------------------


class ProfiledServer(Server):
    """The web process under cProfile (`--profile-web out.prof`), for finding where it spends."""

    profile_to: Path

    def start(self, timeout: float = 60.0) -> None:
        command = [
            PYTHON, "-m", "cProfile", "-o", str(self.profile_to), "-m", "uvicorn", self.app,
            "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop", "--http",
            "httptools", "--no-access-log", "--log-level", "warning", "--lifespan", "on",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, self.name, timeout)


class FastPostgres(Postgres):
    """PostgreSQL with fsync and synchronous_commit off: this benchmark measures the live
    stream, not the disk (bench/ingest.py measures durable ingest, with fsync on)."""

    def start(self) -> None:
        self.cluster.init()
        with open(self.cluster.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        self.cluster.start()
        self.psql(f"CREATE DATABASE {self.database}", database="postgres")


def relay_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update({
        "RELAY_DATABASE_URL": database_url,
        "RELAY_REDIS_URL": redis_url,
        "RELAY_DATA_DIR": str(data_dir),
        "RELAY_SECRET_KEY": secrets.token_urlsafe(32),
        "RELAY_TARGET_ALLOWLIST": "127.0.0.1",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_REQUEST_LOG": "false",
        "DJANGO_SETTINGS_MODULE": "relay.settings",
    })
    return env


class Processes:
    """Every process the benchmark starts; all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None,
              stdout: int | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(command, cwd=ROOT, env=env or os.environ.copy(),
                                   stdout=stdout if stdout is not None else log, stderr=log
                                   if stdout is None else None)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class CpuMeter:
    """CPU per process (a name's process and its children: PostgreSQL's backends) over a
    window, as a share of one core; `bench` is this process alone (the load generator),
    `machine` everything on the machine, other helpers' work included."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.processes["bench"] = psutil.Process()
        self.start: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        from _loadgen import machine_busy_seconds

        sample = {}
        for name, process in self.processes.items():
            total = 0.0
            family = [process] if name == "bench" else [process, *process.children(recursive=True)]
            for each in family:
                try:
                    times = each.cpu_times()
                    total += times.user + times.system
                except Exception:  # noqa: BLE001 - a process that ended uses no more CPU
                    continue
            sample[name] = total
        sample["machine"] = machine_busy_seconds()
        return sample

    def begin(self) -> None:
        self.start = self._sample()

    def end(self, seconds: float) -> dict[str, float]:
        now = self._sample()
        return {name: (now[name] - self.start.get(name, 0.0)) / seconds for name in now}


async def drain(sink: str, timeout: float = 20.0) -> None:
    """Wait until the sink has seen no new delivery for a second (the backlog is done)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = http_json("GET", f"{sink}/_count")[1]
        if count == last:
            return
        last = count
        await asyncio.sleep(1.0)


async def start_watchers(args: argparse.Namespace, processes: Processes, ws_url: str,
                         meter: CpuMeter) -> subprocess.Popen:
    import psutil

    watchers = processes.start("watchers", [PYTHON, __file__, "--role", "watchers",
                                            "--url", ws_url, "--clients", str(args.clients)],
                               stdout=subprocess.PIPE)
    line = await asyncio.wait_for(asyncio.to_thread(watchers.stdout.readline), 60)
    if line.strip() != b"ready":
        raise BenchError(f"the watchers did not connect: {line!r}")
    meter.processes["watchers"] = psutil.Process(watchers.pid)
    return watchers


async def stop_watchers(watchers: subprocess.Popen, meter: CpuMeter) -> dict[str, Any]:
    await asyncio.sleep(1.5)
    watchers.send_signal(signal.SIGTERM)
    out, _ = await asyncio.to_thread(watchers.communicate, timeout=60)
    meter.processes.pop("watchers", None)
    return json.loads(out.decode().strip().splitlines()[-1])


def client_figures(report: dict[str, Any], latencies: list[float], span: float) -> dict[str, Any]:
    clients = report["clients"]
    total_items = sum(c["items"] for c in clients)
    return {
        "latencies": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "messages_per_s_all_clients": total_items / span,
        "messages_per_s_per_client": total_items / span / len(clients),
        "frames_per_s_per_client": sum(c["frames"] for c in clients) / span / len(clients),
        "dropped": sum(c["dropped"] for c in clients),
        "by_type": {kind: clients[0]["by_type"].get(kind, 0)
                    for kind in sorted(clients[0]["by_type"])},
    }


class Window:
    """The measured part of a phase: wall-clock bounds and the CPU used meanwhile."""

    def __init__(self, args: argparse.Namespace, meter: CpuMeter) -> None:
        loop = asyncio.get_running_loop()
        self.start = self.end = 0.0
        self.cpu: dict[str, float] = {}
        self.load_average = 0.0
        loop.call_later(args.warmup, self._begin, meter)
        loop.call_later(args.warmup + args.duration, self._end, meter, args.duration)

    def _begin(self, meter: CpuMeter) -> None:
        self.start = time.time()
        meter.begin()

    def _end(self, meter: CpuMeter, seconds: float) -> None:
        self.end = time.time()
        self.cpu = meter.end(seconds)
        self.load_average = os.getloadavg()[0]

    def holds(self, moment: float) -> bool:
        return self.start <= moment < self.end


def say_phase(label: str, result: dict[str, Any], args: argparse.Namespace, what: str) -> None:
    cpu = ", ".join(f"{name} {share:.0%}" for name, share in result["cpu"].items())
    say(f"  {label}: {what}; CPU (share of a core): {cpu}; load average {result['load_average']:.1f}")
    rate = result.get("delivered_in_window") or result["throughput"]
    per_event = ", ".join(f"{name} {share / max(rate, 1e-9) * 1e6:,.0f}"
                          for name, share in result["cpu"].items() if name != "machine")
    say(f"  {label}: CPU per {'delivered webhook' if 'delivered_in_window' in result else 'request'}"
        f" (µs): {per_event}")
    if "p50_ms" in result:
        say(f"  {label}: {result['messages_per_s_per_client']:,.0f} live messages/s per client "
            f"({result['frames_per_s_per_client']:.0f} frames/s), "
            f"{result['messages_per_s_all_clients']:,.0f}/s to all {args.clients}; "
            f"dropped {result['dropped']}; latency to the client p50 {result['p50_ms']:.0f} ms, "
            f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms "
            f"({result['latencies']:,} samples); per client by type {result['by_type']}")
    if result.get("missing"):
        say(f"  {label}: {result['missing']:,} sampled delivery.succeeded messages had not reached "
            "a client when the watchers stopped (counted as infinitely late)")


async def pipeline_phase(label: str, args: argparse.Namespace, relay: Server, sink_port: int,
                         meter: CpuMeter, processes: Processes, ws_url: str) -> dict[str, Any]:
    watchers = None
    if label == "watched":
        watchers = await start_watchers(args, processes, ws_url, meter)
    sink = f"http://127.0.0.1:{sink_port}"
    http_json("GET", f"{sink}/_records")
    say(f"  {label}: {args.warmup:g} s warm-up + {args.duration:g} s measured at "
        f"{args.rate:,} webhooks/s" + (f", {args.clients} live clients" if watchers else ""))
    window = Window(args, meter)
    began = time.time()
    load = await offer_load(f"{relay.base}/in/bench", args.rate, args.warmup + args.duration,
                            label, f"{sink}/_count")
    await drain(sink)
    records = http_json("GET", f"{sink}/_records")[1]
    relay.check_alive()
    finished = max((t for _, t in records), default=time.time())
    result: dict[str, Any] = {
        "label": label,
        "ingest_per_s": sum(1 for t in load["accepted_at"] if window.holds(t)) / args.duration,
        "delivered_in_window": sum(1 for _, t in records if window.holds(t)) / args.duration,
        # Every delivery of the phase over the time until the last one, backlog included:
        # less sensitive to the dispatcher lagging at the edges of the window.
        "throughput": len(records) / max(finished - began, 1e-9),
        "statuses": load["statuses"], "errors": load["errors"][:5],
        "error_count": len(load["errors"]), "cpu": window.cpu,
        "load_average": window.load_average,
    }
    if watchers is not None:
        report = await stop_watchers(watchers, meter)
        answered = dict(records)
        latencies = [
            (at - answered[delivery_id]) * 1000
            for delivery_id, receipts in report["samples"].items()
            if delivery_id in answered and window.holds(answered[delivery_id])
            for at in receipts
        ]
        # A sampled delivery that a decoding client never saw counts as infinitely late.
        missing = sum(max(0, PARSING_CLIENTS - len(report["samples"].get(delivery_id, ())))
                      for delivery_id, at in answered.items()
                      if window.holds(at) and delivery_id[-1:] in SAMPLE_TAIL)
        latencies += [float("inf")] * missing
        result.update(client_figures(report, latencies, args.warmup + args.duration + 1.5))
        result["missing"] = missing
    say_phase(label, result, args, f"ingest {result['ingest_per_s']:,.0f}/s; delivered "
              f"{result['delivered_in_window']:,.0f}/s in the window, {len(records):,} in "
              f"{finished - began:.1f} s = {result['throughput']:,.0f}/s overall")
    return result


async def bus_phase(label: str, args: argparse.Namespace, relay: Server, env: dict[str, str],
                    meter: CpuMeter, processes: Processes, ws_url: str,
                    workdir: Path) -> dict[str, Any]:
    from _servers import run_loadgen

    watchers = None
    if label == "watched":
        watchers = await start_watchers(args, processes, ws_url, meter)
    say(f"  {label}: {args.warmup:g} s warm-up + {args.duration:g} s measured: "
        f"{args.rate:,} events/s ({3 * args.rate:,} live messages/s) published by another "
        f"process, and ingest at full speed ({args.connections} connections)"
        + (f", {args.clients} live clients" if watchers else ""))
    publisher = processes.start(f"publisher-{label}", [
        PYTHON, __file__, "--role", "publisher", "--rate", str(args.rate),
        "--seconds", str(args.warmup + args.duration)], env=env, stdout=subprocess.PIPE)
    window = Window(args, meter)
    load = await asyncio.to_thread(run_loadgen, {
        "label": label, "host": "127.0.0.1", "port": relay.port, "path": "/in/bench",
        "headers": {"content-type": "application/json"}, "body_hex": BODY.hex(),
        "connections": args.connections, "warmup": args.warmup, "duration": args.duration,
    }, workdir)
    out, _ = await asyncio.to_thread(publisher.communicate, timeout=60)
    published = json.loads(out.decode().strip().splitlines()[-1])
    relay.check_alive()
    result: dict[str, Any] = {
        "label": label, "throughput": load["rps"], "ingest_per_s": load["rps"],
        "ingest_p99_ms": load["p99_ms"], "published": published,
        "statuses": {int(code): n for code, n in load["statuses"].items()},
        "errors": load["errors"][:5], "error_count": load["error_count"], "cpu": window.cpu,
        "load_average": window.load_average,
    }
    if watchers is not None:
        report = await stop_watchers(watchers, meter)
        result.update(client_figures(report, report["stamped"],
                                     args.warmup + args.duration + 1.5))
    say_phase(label, result, args, f"ingest {load['rps']:,.0f} req/s (p99 {load['p99_ms']:.0f} ms), "
              f"published {published['published'] / published['seconds']:,.0f} events/s "
              f"(bus shed {published['dropped']})")
    return result


async def orchestrate(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-live-"))
    processes = Processes(workdir)
    pg = FastPostgres() if args.fast_disk else Postgres()
    relay: Server | None = None
    pipeline = args.mode == "pipeline"
    try:
        say(f"Mode {args.mode}: starting PostgreSQL, Redis, Relay (web)"
            + (", a dispatcher and a sink" if pipeline else "") + f"; logs in {workdir}")
        pg.start()
        redis_port = free_port()
        redis = processes.start("redis", ["/usr/bin/redis-server", "--save", "", "--appendonly",
                                          "no", "--port", str(redis_port), "--bind", "127.0.0.1"])
        wait_for_port(redis_port, redis, "redis-server")
        env = relay_env(pg.url, f"redis://127.0.0.1:{redis_port}/0", workdir / "relay-data")
        token = migrated_with_token(env)
        relay = (ProfiledServer if args.profile_web else Server)(
            "relay", "relay.asgi:application", env, workdir)
        if args.profile_web:
            relay.profile_to = args.profile_web
        relay.start()
        auth = {"Authorization": f"Bearer {token}"}
        status, answer = http_json("POST", f"{relay.base}/api/v1/sources", {"slug": "bench"},
                                   headers=auth)
        if status != 201:
            raise BenchError(f"creating the source failed: {status} {answer}")
        pids = {"web": relay.process.pid, "redis": redis.pid, "postgres": pg.postmaster_pid()}
        ws_url = relay.base.replace("http://", "ws://") + f"/ws/live?token={token}"
        results = []
        if pipeline:
            dispatcher = processes.start("dispatcher", [PYTHON, "manage.py", "dispatch"], env=env)
            sink_port = free_port()
            sink = processes.start("sink", [PYTHON, __file__, "--role", "sink", "--port",
                                            str(sink_port)])
            wait_for_port(sink_port, sink, "the sink")
            status, answer = http_json("POST", f"{relay.base}/api/v1/endpoints", {
                "url": f"http://127.0.0.1:{sink_port}/hook", "max_in_flight": 200,
            }, headers=auth)
            if status != 201:
                raise BenchError(f"creating the endpoint failed: {status} {answer}")
            meter = CpuMeter({**pids, "dispatcher": dispatcher.pid, "sink": sink.pid})
            say(f"  priming: {args.prime:g} s at {args.rate:,} webhooks/s, then draining")
            await offer_load(f"{relay.base}/in/bench", args.rate, args.prime, "priming",
                             f"http://127.0.0.1:{sink_port}/_count")
            await drain(f"http://127.0.0.1:{sink_port}")
            for label in ("unwatched", "watched"):
                results.append(await pipeline_phase(label, args, relay, sink_port, meter,
                                                    processes, ws_url))
                if dispatcher.poll() is not None:
                    raise BenchError(f"the dispatcher exited; see its log in {workdir}")
        else:
            meter = CpuMeter(pids)
            for label in ("unwatched", "watched"):
                results.append(await bus_phase(label, args, relay, env, meter, processes,
                                               ws_url, workdir))
        return summarize(results, args)
    finally:
        processes.stop_all()
        if relay is not None:
            relay.stop()
        pg.destroy()


def summarize(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    unwatched, watched = results
    ratio = watched["throughput"] / max(unwatched["throughput"], 1e-9)
    measured = "delivered/s" if args.mode == "pipeline" else "ingest/s"
    say()
    if args.mode == "pipeline":
        say(f"Live stream cost, pipeline: {args.rate:,} webhooks/s offered (open loop), ingested "
            f"and delivered; {args.duration:g} s measured after {args.warmup:g} s warm-up")
        say("latency: from the sink's answer to an attempt to a client receiving delivery.succeeded")
    else:
        say(f"Live stream cost, bus: {args.rate:,} events/s ({3 * args.rate:,} live messages/s) "
            f"published by another process; ingest at full speed with {args.connections} "
            f"connections; {args.duration:g} s measured after {args.warmup:g} s warm-up")
        say("latency: from publish() in the publishing process to a client receiving the message")
    say(f"{'phase':<10} {measured:>12} {'web CPU':>8} {'msgs/s/client':>14} {'p50 ms':>7} "
        f"{'p99 ms':>7}")
    for result in results:
        say(f"{result['label']:<10} {result['throughput']:>12,.0f} "
            f"{result['cpu'].get('web', 0):>8.0%} "
            f"{result.get('messages_per_s_per_client', 0):>14,.0f} "
            f"{result.get('p50_ms', float('nan')):>7.0f} {result.get('p99_ms', float('nan')):>7.0f}")
    say(f"watched / unwatched {measured}: {ratio:.3f} (target ≥ {TARGET_RATIO})")
    say(f"latency p99: {watched['p99_ms']:.0f} ms (target ≤ {TARGET_P99_MS:.0f} ms)")
    problems = []
    for result in results:
        non_2xx = {code: n for code, n in result["statuses"].items() if code not in (0, 202)}
        if non_2xx or result["error_count"]:
            problems.append(f"{result['label']}: answers {non_2xx}, errors {result['errors']}")
        if result["statuses"].get(0):
            say(f"note: {result['label']}: {result['statuses'][0]} keep-alive connections closed "
                "by the server before an answer (not retried)")
    if ratio < TARGET_RATIO:
        problems.append(f"throughput ratio {ratio:.3f} < {TARGET_RATIO}")
    if not watched["p99_ms"] <= TARGET_P99_MS:
        problems.append(f"p99 {watched['p99_ms']:.0f} ms > {TARGET_P99_MS:.0f} ms")
    for problem in problems:
        say(f"MISSED: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="webhooks per second offered (1000)")
    parser.add_argument("--clients", type=int, default=20, help="live clients when watched (20)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase (15)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="unmeasured seconds at the start of each phase (3)")
    parser.add_argument("--prime", type=float, default=3.0,
                        help="seconds of load before the phases, to warm everything up (3)")
    parser.add_argument("--durable", dest="fast_disk", action="store_false",
                        help="run PostgreSQL with fsync on (default: off, see FastPostgres)")
    parser.add_argument("--mode", choices=["pipeline", "bus"], default="pipeline",
                        help="pipeline: webhooks ingested and delivered (default); bus: "
                             "synthetic live messages from another process, plus ingest at "
                             "full speed, to isolate the live path")
    parser.add_argument("--connections", type=int, default=32,
                        help="ingest connections in bus mode (32)")
    parser.add_argument("--role", choices=["main", "sink", "watchers", "publisher"],
                        default="main", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--profile-web", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.role == "sink":
        uvloop.run(run_sink(args.port))
        return 0
    if args.role == "watchers":
        uvloop.run(run_watchers(args.url, args.clients))
        return 0
    if args.role == "publisher":
        uvloop.run(run_publisher(args.rate, args.seconds))
        return 0
    try:
        return uvloop.run(orchestrate(args))
    except BenchError as exc:
        say(f"benchmark failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

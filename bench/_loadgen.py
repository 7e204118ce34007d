"""HTTP/1.1 keep-alive load generator: N connections, each with one request in flight.

Run as its own process (`python bench/_loadgen.py --spec spec.json`); prints one JSON
result line on stdout and a progress line per second on stderr.

It is written for low CPU per request (uvloop, httptools' C parser, one pre-encoded
request, callbacks instead of a coroutine per request) so that on a small machine it
takes little from the server it measures; it reports its own CPU so that can be checked.

Unlike wrk it does not abandon the requests in flight when the time is up: each
connection stops sending and waits for its last answer. So the count of 2xx answers is
exact, and can be compared with the rows the server stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field

import httptools
import psutil
import uvloop


@dataclass
class Tally:
    warmup_end: float = 0.0
    measure_end: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answered_2xx: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)


class StandardWebhooksRequests:
    """A fresh `webhook-id` per request, signed as Standard Webhooks providers sign (the
    path real providers take: every request is a new key for the source's dedup)."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str], body: bytes,
                 secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
                     f"Content-Length: {len(body)}"]
        self.head += [f"{name}: {value}" for name, value in headers.items()]
        self.body = body
        self.prefix = f"msg_{os.getpid()}_{time.time_ns()}_"
        self.counter = itertools.count()

    def __call__(self) -> bytes:
        message_id = f"{self.prefix}{next(self.counter)}"
        timestamp = str(int(time.time()))
        mac = hmac.new(self.key, f"{message_id}.{timestamp}.".encode() + self.body,
                       hashlib.sha256).digest()
        lines = [*self.head, f"webhook-id: {message_id}", f"webhook-timestamp: {timestamp}",
                 f"webhook-signature: v1,{base64.b64encode(mac).decode()}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class Connection(asyncio.Protocol):
    """One keep-alive connection sending its request again as soon as it is answered (the
    same bytes, or a new request from a factory)."""

    def __init__(self, request: bytes | StandardWebhooksRequests, tally: Tally,
                 finished: asyncio.Future) -> None:
        self.request = request
        self.tally = tally
        self.finished = finished
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.waiting = True
        self.sent_at = time.perf_counter_ns()
        assert self.transport is not None
        request = self.request
        self.transport.write(request if isinstance(request, bytes) else request())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad response: {exc}")

    def on_message_complete(self) -> None:
        now_ns = time.perf_counter_ns()
        tally = self.tally
        status = self.parser.get_status_code()
        self.waiting = False
        tally.completed += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            tally.answered_2xx += 1
        now = now_ns / 1e9
        if tally.warmup_end <= now < tally.measure_end:
            tally.latencies_ns.append(now_ns - self.sent_at)
        if now < tally.measure_end and self.parser.should_keep_alive():
            self._send()
        else:
            self._finish()

    def _fail(self, reason: str) -> None:
        self.tally.errors.append(reason)
        self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.tally.errors.append(f"connection closed before the answer ({exc})")
            self.waiting = False
        if not self.finished.done():
            self.finished.set_result(None)


def build_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (busy time from /proc/stat)."""
    with open("/proc/stat") as stat:  # noqa: PTH123
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU used by some processes (and their children, e.g. PostgreSQL backends) over the window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, dict[int, float]] = {}
        self.machine_start = 0.0

    def _sample(self, pid: int) -> dict[int, float]:
        sample: dict[int, float] = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    sample[process.pid] = _cpu_seconds(process)
        return sample

    def begin(self) -> None:
        self.start = {name: self._sample(pid) for name, pid in self.pids.items()}
        self.machine_start = machine_busy_seconds()

    def end(self) -> dict[str, float]:
        used = {}
        for name, pid in self.pids.items():
            now = self._sample(pid)
            before = self.start.get(name, {})
            used[name] = sum(now[p] - before.get(p, 0.0) for p in now)
        used["machine"] = machine_busy_seconds() - self.machine_start
        return used


async def run(spec: dict) -> dict:
    loop = asyncio.get_running_loop()
    body = bytes.fromhex(spec["body_hex"])
    request: bytes | StandardWebhooksRequests
    if spec.get("standard_webhooks_secret"):
        request = StandardWebhooksRequests(spec["host"], spec["port"], spec["path"],
                                           spec["headers"], body, spec["standard_webhooks_secret"])
    else:
        request = build_request(spec["host"], spec["port"], spec["path"], spec["headers"], body)
    tally = Tally()
    warmup, duration = spec["warmup"], spec["duration"]
    start = time.perf_counter()
    tally.warmup_end = start + warmup
    tally.measure_end = tally.warmup_end + duration
    watch = CpuWatch({name: int(pid) for name, pid in spec.get("watch", {}).items()})
    own_cpu: dict[str, float] = {}

    def window_begins() -> None:
        own_cpu["start"] = _own_cpu()
        own_cpu["completed"] = tally.completed
        watch.begin()

    def window_ends() -> None:
        own_cpu["end"] = _own_cpu()
        own_cpu["cpu"] = watch.end()  # type: ignore[assignment]

    loop.call_at(loop.time() + warmup, window_begins)
    loop.call_at(loop.time() + warmup + duration, window_ends)

    last = [start, 0]

    def progress() -> None:
        now = time.perf_counter()
        if now >= tally.measure_end + 1:
            return
        rate = (tally.completed - last[1]) / (now - last[0])
        phase = "warm-up" if now < tally.warmup_end else ("measure" if now < tally.measure_end else "drain")
        print(f"    {spec['label']:>8} {phase:<8} t={now - start:5.1f}s {rate:8.0f} req/s"
              f" ({tally.completed} answered, {len(tally.errors)} errors)",
              file=sys.stderr, flush=True)
        last[0], last[1] = now, tally.completed
        loop.call_later(1.0, progress)

    loop.call_later(1.0, progress)
    waits = []
    for _ in range(spec["connections"]):
        finished = loop.create_future()
        await loop.create_connection(
            lambda f=finished: Connection(request, tally, f), spec["host"], spec["port"]
        )
        waits.append(finished)
    await asyncio.wait_for(asyncio.gather(*waits), timeout=warmup + duration + 60)

    latencies = sorted(tally.latencies_ns)
    measured = len(latencies)
    own = own_cpu.get("end", 0.0) - own_cpu.get("start", 0.0)
    return {
        "label": spec["label"],
        "connections": spec["connections"],
        "duration": duration,
        "measured": measured,
        "rps": measured / duration,
        "p50_ms": _percentile(latencies, 0.50) / 1e6,
        "p99_ms": _percentile(latencies, 0.99) / 1e6,
        "max_ms": (latencies[-1] / 1e6) if latencies else 0.0,
        "answered_2xx": tally.answered_2xx,
        "completed": tally.completed,
        "statuses": {str(code): count for code, count in sorted(tally.statuses.items())},
        "errors": tally.errors[:20],
        "error_count": len(tally.errors),
        "loadgen_cpu_share": own / duration,
        "cpu_seconds": own_cpu.get("cpu", {}),
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file describing the run")
    spec = json.loads(open(parser.parse_args().spec).read())  # noqa: SIM115, PTH123
    result = uvloop.run(run(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Raw client loops: the baselines of bench/dispatch_throughput.py.

    python bench/_dispatch_clients.py --client aiohttp|httpx|httpx-aiohttp --url URL
        [--concurrency 100] [--warmup 2] [--duration 5] [--loop asyncio|uvloop]

`concurrency` tasks each POST the same 1 KB JSON body to `url` as fast as answers come,
over one shared client (keep-alive for every connection). Runs in its own process, like
the dispatcher it is compared with; prints a progress line per second on stderr and one
JSON line on stdout: requests answered in the measured window, req/s, statuses, errors,
and the CPU this process used per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # Relay's own transport, for the httpx-aiohttp baseline

BODY = json.dumps({"type": "bench.dispatch", "pad": "x" * 990}, separators=(",", ":")).encode()
HEADERS = {"content-type": "application/json", "user-agent": "relay-bench/1"}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _aiohttp(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[int]], Callable]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def one() -> int:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            return response.status

    return one, session.close


async def _httpx(url: str, concurrency: int, transport: str) -> tuple[Callable, Callable]:
    import httpx

    if transport == "aiohttp":
        import aiohttp

        from dispatch.delivery_client import DeliveryTransport

        def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        client = httpx.AsyncClient(transport=DeliveryTransport(session),
                                   timeout=httpx.Timeout(15.0))
    else:
        client = httpx.AsyncClient(timeout=httpx.Timeout(15.0))

    async def one() -> int:
        response = await client.post(url, content=BODY, headers=HEADERS)
        return response.status_code

    return one, client.aclose


async def run(args: argparse.Namespace) -> dict:
    if args.client == "aiohttp":
        one, close = await _aiohttp(args.url, args.concurrency)
    else:
        one, close = await _httpx(args.url, args.concurrency,
                                  "aiohttp" if args.client == "httpx-aiohttp" else "default")
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    counted = [0]
    start = time.perf_counter()
    window = (start + args.warmup, start + args.warmup + args.duration)
    marks: dict[str, float] = {}

    async def worker() -> None:
        while (now := time.perf_counter()) < window[1]:
            try:
                status = await one()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[type(exc).__name__] += 1
                continue
            done = time.perf_counter()
            if window[0] <= now and done < window[1]:
                statuses[status] += 1
            counted[0] += 1

    async def progress() -> None:
        last, last_count = start, 0
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            phase = "warm-up" if now < window[0] else "measure"
            print(f"    {args.client:>13} {phase:<8} t={now - start:4.1f}s "
                  f"{(counted[0] - last_count) / (now - last):8,.0f} req/s",
                  file=sys.stderr, flush=True)
            last, last_count = now, counted[0]

    loop = asyncio.get_running_loop()
    loop.call_later(args.warmup, lambda: marks.setdefault("cpu0", _cpu()))
    ticker = loop.create_task(progress())
    await asyncio.sleep(0)
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    cpu = _cpu() - marks.get("cpu0", 0.0)
    ticker.cancel()
    await close()
    answered = sum(statuses.values())
    return {
        "client": args.client, "concurrency": args.concurrency, "duration": args.duration,
        "answered": answered, "rps": answered / args.duration,
        "statuses": {str(k): v for k, v in statuses.items()}, "errors": dict(errors),
        "cpu_us_per_request": cpu / max(answered, 1) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True, choices=["aiohttp", "httpx", "httpx-aiohttp"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""CPU per request of Relay's delivery client against raw aiohttp, in one process.

    python bench/client_cost.py [--requests 10000] [--rounds 5] [--concurrency 100]

Both POST the same 1 KB body with the same headers a delivery carries to our nginx (204),
`--concurrency` tasks over one client each; the rounds alternate between the two and the
medians are compared (the host's speed drifts). "relay" is `dispatch.posting.post_capped`
on `dispatch.delivery_client.build_http_client` (the httpx API over Relay's transport, the
SSRF guard on), what every webhook attempt runs; "aiohttp" is a bare `ClientSession.post`.

For a figure that does not drift, count instructions instead of CPU time: run one variant
under valgrind at two sizes and take the difference, e.g.
`valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/client_cost.py
--only relay --rounds 1 --requests 3000` (then 1000), Collected / 2000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")

from _dispatch_common import Nginx  # noqa: E402

BODY = b'{"type":"bench.dispatch","pad":"' + b"x" * 990 + b'"}'
HEADERS = {
    "content-type": "application/json", "user-agent": "Relay/0.1.0",
    "accept-encoding": "identity", "webhook-id": "evt_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
    "x-relay-event-type": "bench.dispatch", "x-relay-source": "bench", "x-relay-attempt": "1",
    "x-relay-delivery-id": "dlv_01hzzzzzzzzzzzzzzzzzzzzzzz", "x-relay-hops": "1",
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def aiohttp_client(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[None]],
                                                            Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def one() -> None:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()

    return one, session.close


async def relay_client(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[None]],
                                                          Callable[[], Awaitable[None]]]:
    import httpx

    from dispatch.delivery_client import build_http_client
    from dispatch.posting import post_capped

    client = build_http_client(max_connections=concurrency, timeout=10,
                               allowlist=["127.0.0.1"])
    target = httpx.URL(url)

    async def one() -> None:
        await post_capped(client, target, content=BODY, headers=dict(HEADERS), timeout=10)

    return one, client.aclose


CLIENTS = {"aiohttp": aiohttp_client, "relay": relay_client}


async def measure(name: str, url: str, requests: int, concurrency: int) -> float:
    """µs of this process's CPU per request, after 300 requests of warm-up."""
    one, close = await CLIENTS[name](url, concurrency)
    try:
        for _ in range(300):
            await one()
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        started = cpu_seconds()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (cpu_seconds() - started) / requests * 1e6
    finally:
        await close()


async def main(args: argparse.Namespace, url: str) -> None:
    names = [args.only] if args.only else list(CLIENTS)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for number in range(1, args.rounds + 1):
        for name in names:
            figures[name].append(await measure(name, url, args.requests, args.concurrency))
            print(f"  round {number}/{args.rounds} {name:>8}: {figures[name][-1]:6.1f} µs of CPU "
                  "a request", flush=True)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:>8}: median {value:.1f} µs a request")
    if len(medians) == 2:
        print(f"relay / aiohttp: {medians['relay'] / medians['aiohttp']:.2f}x the CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--only", choices=sorted(CLIENTS))
    args = parser.parse_args()
    import uvloop

    sink = Nginx()
    sink.start()
    print(f"nginx (204) on {sink.url('/hook')}; {args.rounds} rounds of {args.requests:,} "
          f"requests, concurrency {args.concurrency}", flush=True)
    try:
        uvloop.run(main(args, sink.url("/hook")))
    finally:
        sink.stop()

"""The live stream across processes through a real Redis, and through a Redis outage."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from live.hub import hub
from tests.live.conftest import LiveReader, connect, make_source, post_webhook
from tests.servers import wait_until

ROOT = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 6.0
"""Longer than redis-py's default 5 s socket timeout, which kills idle pub/sub readers."""

PUBLISHER = """
import asyncio, sys, time
import django
django.setup()
from kernel.bus import bus, publish

async def main():
    bus.start()
    await asyncio.sleep(max(0.0, float(sys.argv[1]) - time.time()))
    publish({"type": "event.received", "event": {"id": sys.argv[2], "source": "elsewhere",
             "event_type": "cross.process", "received_at": "2026-01-01T00:00:00+00:00", "size": 2}})
    await bus.stop()
    print(bus.sent)

asyncio.run(main())
"""


async def test_a_message_published_by_another_process_arrives_after_an_idle_period(
        db, admin_token, redis_server, redis_layer):
    connected, communicator = await connect(f"/ws/live?token={admin_token}")
    assert connected
    reader = LiveReader(communicator)
    await wait_until(lambda: hub.channel is not None, message="the hub to subscribe in Redis")

    publish_at = time.time() + IDLE_SECONDS
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(publish_at), "evt_from_another_process",
        cwd=ROOT, env={**os.environ, "RELAY_REDIS_URL": redis_server.url,
                       "DJANGO_SETTINGS_MODULE": "relay.settings"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(publisher.communicate(), IDLE_SECONDS + 30)
    assert publisher.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "1", "the other process handed one message to Redis"

    item = await reader.wait_for(
        lambda m: m["type"] == "event.received" and m["event"]["id"] == "evt_from_another_process",
        timeout=5, message="the other process's message")
    assert item["event"]["event_type"] == "cross.process"
    assert time.time() >= publish_at, "the consumer was idle for longer than 5 s before it"
    assert reader.closed is None
    await communicator.disconnect()


async def test_ingest_keeps_answering_while_redis_is_down_and_the_stream_resumes(
        client, admin, admin_token, relay_server, redis_server, redis_layer, live_bus):
    from websockets.asyncio.client import connect as ws_connect

    await make_source(client, admin, "shop")
    items: list[dict] = []

    async def listen(socket) -> None:
        async for frame in socket:
            message = json.loads(frame)
            items.extend(message["items"] if message["type"] == "batch" else [message])

    url = relay_server.replace("http://", "ws://") + f"/ws/live?token={admin_token}"
    async with ws_connect(url) as socket:
        listener = asyncio.get_running_loop().create_task(listen(socket))
        arrived = lambda ids: lambda: any(  # noqa: E731
            m["type"] == "event.received" and m["event"]["id"] in ids for m in items)

        first = await post_webhook(client, "shop")
        await wait_until(arrived({first}), timeout=5, message="the first event live")

        redis_server.stop()
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            await post_webhook(client, "shop")
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5, f"ingest slowed to {slowest:.3f} s with Redis down"
        stats_before = sum(1 for m in items if m["type"] == "stats")
        await wait_until(lambda: sum(1 for m in items if m["type"] == "stats") > stats_before + 1,
                         timeout=5, message="stats to keep coming while Redis is down")

        redis_server.start()
        await redis_server.wait_ready()
        posted: set[str] = set()

        async def resumed() -> bool:
            posted.add(await post_webhook(client, "shop"))
            return arrived(posted)()

        await wait_until(resumed, timeout=20, interval=0.3, message="the stream to resume")
        assert socket.state.name == "OPEN"
        listener.cancel()

"""Dispatchers wake on NOTIFY (not on their slow poll), and keep doing so after the LISTEN
connection is cut."""

from __future__ import annotations

import time

from tortoise import connections

from dispatch.wakeup import APPLICATION_NAME
from tests.dispatch.conftest import make_endpoint, make_source, post_event
from tests.servers import wait_until

LISTENERS = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"


async def listener_pids() -> set[int]:
    _, rows = await connections.get("default").execute_query(LISTENERS, [APPLICATION_NAME])
    return {row["pid"] for row in rows}


async def test_notify_wakes_the_dispatcher_even_after_its_connection_drops(
        client, admin, sink, start_dispatcher, db_left_empty):
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, sink.url("/woken"))
    await start_dispatcher(poll_interval=60)
    await wait_until(lambda: listener_pids(), message="the LISTEN connection")
    [old] = await listener_pids()

    started = time.monotonic()
    await post_event(client, "shop")
    await wait_until(lambda: sink.count("/woken") == 1, timeout=3, message="a NOTIFY wake-up")
    assert time.monotonic() - started < 3

    await connections.get("default").execute_query("SELECT pg_terminate_backend($1)", [old])

    async def reconnected() -> bool:
        pids = await listener_pids()
        return bool(pids) and old not in pids

    await wait_until(reconnected, timeout=5, message="the LISTEN connection to come back")
    started = time.monotonic()
    await post_event(client, "shop")
    await wait_until(lambda: sink.count("/woken") == 2, timeout=3,
                     message="a NOTIFY wake-up on the new connection")
    assert time.monotonic() - started < 3

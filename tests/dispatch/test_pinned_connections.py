"""The dispatcher's serial loops keep a connection each (`dispatch.queue.Pinned`), so every
hot statement is planned on one connection, not on every connection of the pool."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from tortoise import connections

from dispatch import queue
from tests.dispatch.conftest import make_endpoint, make_source, post_event
from tests.servers import wait_until


def idle_in_pool() -> int:
    pool: asyncpg.Pool = connections.get("default")._pool
    return pool.get_idle_size()


async def backend(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT pg_backend_pid()"))


async def test_a_kept_connection_serves_every_use_until_released(db) -> None:
    pinned = queue.Pinned()
    async with pinned.connection() as connection:
        first = await backend(connection)
    async with queue.pooled() as other:  # others still borrow beside it
        assert await backend(other) != first
    idle_while_kept = idle_in_pool()
    for _ in range(3):
        async with pinned.connection() as connection:
            assert await backend(connection) == first
    await pinned.release()
    assert idle_in_pool() == idle_while_kept + 1


async def test_a_failed_statement_gives_the_connection_back(db) -> None:
    pinned = queue.Pinned()
    async with pinned.connection() as connection:
        await backend(connection)
    idle_while_kept = idle_in_pool()
    with pytest.raises(asyncpg.UndefinedTableError):
        async with pinned.connection() as connection:
            await connection.execute("SELECT * FROM no_such_table")
    assert idle_in_pool() == idle_while_kept + 1
    async with pinned.connection() as connection:  # the next use takes one again
        assert await connection.fetchval("SELECT 1") == 1
    await pinned.release()


async def test_a_connection_closed_meanwhile_is_replaced(db) -> None:
    pinned = queue.Pinned()
    async with pinned.connection() as connection:
        first = await backend(connection)
        connection.terminate()
    async with pinned.connection() as connection:
        assert await backend(connection) != first
    await pinned.release()


async def test_without_room_in_the_pool_each_use_borrows(db) -> None:
    assert not queue.pinning_fits(queue.PINNED_LOOPS + 1)
    assert queue.pinning_fits(queue.PINNED_LOOPS + 2)
    pinned = queue.Pinned(keep=False)
    idle = idle_in_pool()
    async with pinned.connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1
    assert idle_in_pool() == idle
    await pinned.release()


@pytest.fixture
def backends_by_statement(monkeypatch) -> dict[str, set[int]]:
    """The backends (server pids) each kind of dispatcher statement ran on."""
    seen: dict[str, set[int]] = defaultdict(set)
    real = queue.pooled

    @contextlib.asynccontextmanager
    async def pooled_and_watched() -> AsyncIterator[Any]:
        async with real() as connection:
            pid = connection.get_server_pid()

            def log(record: Any) -> None:
                words = " ".join(record.query.split()).upper()
                for kind, start in (("claim", "WITH DUE"), ("claim", "WITH CANDIDATE"),
                                    ("settle", "INSERT INTO ATTEMPT"),
                                    ("route", "WITH MARKED")):
                    if words.startswith(start):
                        seen[kind].add(pid)

            connection.add_query_logger(log)
            try:
                yield connection
            finally:
                connection.remove_query_logger(log)

    for module in ("dispatch.queue", "dispatch.worker", "dispatch.settle"):
        monkeypatch.setattr(f"{module}.pooled", pooled_and_watched)
    return seen


async def test_claims_settles_and_routing_keep_their_connections(
        client, admin, sink, start_dispatcher, backends_by_statement) -> None:
    await make_source(client, admin, "shop")
    await make_endpoint(client, admin, sink.url("/hook"))
    idle = idle_in_pool()
    dispatcher = await start_dispatcher(poll_interval=0.05, concurrency=4)
    assert dispatcher.pin_connections
    for n in range(60):
        await post_event(client, "shop", {"n": n})
    await wait_until(lambda: sink.count("/hook") == 60, timeout=20,
                     message="every event delivered")
    await dispatcher.stop()

    seen = backends_by_statement
    assert seen["claim"] and len(seen["claim"]) <= 2, seen  # one per claimer
    assert len(seen["settle"]) == 1, seen
    assert len(seen["route"]) == 1, seen
    assert idle_in_pool() >= idle, "a stopped dispatcher keeps no connection"

"""Group commit: webhooks that arrive together share one INSERT + NOTIFY statement and its
COMMIT; each caller returns only once its own row is committed, and a bad row fails alone."""

from __future__ import annotations

import asyncio
import contextvars
import os

import asyncpg
import pytest

from hooks.group_commit import GroupCommit
from tests.servers import wait_until

# --- The grouping logic, with a writer that records what it is given ----------------------


class Writer:
    """Records each group; holds every write until `release()` when `hold` is set."""

    def __init__(self, hold: bool = False, fail_on: str | None = None,
                 error: Exception | None = None) -> None:
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()
        self.fail_on = fail_on
        self.error = error
        self.seen_var: list[str | None] = []

    async def __call__(self, rows: list[list]) -> None:
        self.groups.append([row[0] for row in rows])
        self.seen_var.append(_caller_var.get())
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.fail_on is not None and any(row[0] == self.fail_on for row in rows):
            raise ValueError(f"bad row {self.fail_on}")

    def release(self) -> None:
        self.gate.set()


_caller_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


def group(writer: Writer, max_in_flight: int = 1, max_rows: int = 100,
          max_bytes: int = 1 << 20) -> GroupCommit:
    return GroupCommit(writer, max_in_flight=max_in_flight, max_rows=max_rows,
                       max_bytes=max_bytes, is_unavailable=lambda exc: isinstance(exc, OSError))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_rows_that_wait_for_a_write_go_together_in_the_next():
    writer = Writer(hold=True)
    commit = group(writer)
    first = asyncio.create_task(commit.write(["a"], 1))
    await settle()
    waiting = [asyncio.create_task(commit.write([name], 1)) for name in "bcdef"]
    await settle()
    assert writer.groups == [["a"]]
    assert not first.done(), "a caller returned before its write finished"
    writer.release()
    await asyncio.gather(first, *waiting)
    assert writer.groups == [["a"], ["b", "c", "d", "e", "f"]]
    assert (commit.writes, commit.rows) == (2, 6)


async def test_up_to_max_in_flight_writes_are_under_way_at_once():
    writer = Writer(hold=True)
    commit = group(writer, max_in_flight=2)
    tasks = []
    for name in "abc":
        tasks.append(asyncio.create_task(commit.write([name], 1)))
        await settle()
    assert writer.groups == [["a"], ["b"]], "c must wait for one of the two writes"
    writer.release()
    await asyncio.gather(*tasks)
    assert writer.groups == [["a"], ["b"], ["c"]]


async def test_a_bad_row_fails_only_its_own_caller():
    writer = Writer(hold=True, fail_on="bad")
    commit = group(writer)
    first = asyncio.create_task(commit.write(["a"], 1))
    await settle()
    rest = {name: asyncio.create_task(commit.write([name], 1)) for name in ("b", "bad", "c")}
    await settle()
    writer.release()
    await first
    await rest["b"]
    await rest["c"]
    with pytest.raises(ValueError, match="bad row"):
        await rest["bad"]
    assert writer.groups == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]


async def test_database_unavailable_fails_the_whole_group_without_retrying():
    writer = Writer(error=ConnectionRefusedError("down"))
    commit = group(writer)
    tasks = [asyncio.create_task(commit.write([name], 1)) for name in "abc"]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, ConnectionRefusedError) for result in results)
    assert writer.groups == [["a", "b", "c"]]


async def test_groups_are_bounded_in_rows_and_bytes():
    writer = Writer()
    commit = group(writer, max_rows=3, max_bytes=100)
    await asyncio.gather(*(commit.write([f"r{n}"], 10) for n in range(7)))
    assert writer.groups == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]

    writer = Writer()
    commit = group(writer, max_rows=100, max_bytes=100)
    await asyncio.gather(*(commit.write([f"r{n}"], 40) for n in range(5)),
                         commit.write(["huge"], 500))
    assert writer.groups == [["r0", "r1"], ["r2", "r3"], ["r4"], ["huge"]]


async def test_a_cancelled_caller_that_still_waits_is_not_written():
    writer = Writer(hold=True)
    commit = group(writer)
    first = asyncio.create_task(commit.write(["a"], 1))
    await settle()
    gone = asyncio.create_task(commit.write(["gone"], 1))
    kept = asyncio.create_task(commit.write(["kept"], 1))
    await settle()
    gone.cancel()
    await settle()
    writer.release()
    await asyncio.gather(first, kept)
    assert gone.cancelled()
    assert writer.groups == [["a"], ["kept"]]


async def test_the_writer_does_not_run_in_the_callers_context():
    """A caller inside a Tortoise transaction must not lend it to everyone's rows."""
    writer = Writer()
    commit = group(writer)

    async def caller() -> None:
        _caller_var.set("inside a transaction")
        await commit.write(["a"], 1)

    await caller()
    assert writer.seen_var == [None]


# --- Through the real store, on PostgreSQL -------------------------------------------------


def _event(n: int, query: str = ""):
    from hooks.store import NewEvent

    return NewEvent(
        source_id="src_group", source_slug="group", event_type=None, dedup_key=None,
        method="POST", query=query, headers={"content-type": "application/json"},
        content_type="application/json", body=b'{"n": %d}' % n,
    )


async def test_concurrent_events_share_a_statement_each_committed_one_wake_up_per_statement(db):
    from hooks import store
    from kernel.database import EVENT_CHANNEL

    url = os.environ["RELAY_DATABASE_URL"]
    notified: list[str] = []
    listener = await asyncpg.connect(url)
    checker = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await listener.add_listener(EVENT_CHANNEL, lambda *args: notified.append(args[3]))
        writes_before = store._group_commit.writes

        async def one(n: int) -> str:
            stored = await store.store_event(_event(n), 60)
            visible = await checker.fetchval("SELECT count(*) FROM event WHERE id = $1", stored.id)
            assert visible == 1, "store_event returned before its row was committed"
            return stored.id

        ids = await asyncio.gather(*(one(n) for n in range(40)))
        assert len(set(ids)) == 40
        writes = store._group_commit.writes - writes_before
        # One wake-up per statement (the router reads the queue), not one per event.
        await wait_until(lambda: len(notified) >= writes, message="a NOTIFY per statement")
        assert notified == [""] * writes, notified
        assert 1 <= writes <= store.GROUP_MAX_IN_FLIGHT + 1, f"{writes} statements for 40 events"
        bodies = await checker.fetch("SELECT body FROM event WHERE id = ANY($1::text[])", ids)
        assert sorted(row["body"] for row in bodies) == sorted(b'{"n": %d}' % n for n in range(40))
    finally:
        await listener.close()
        await checker.close()


async def test_an_event_postgresql_refuses_fails_alone(db):
    """A NUL character cannot be stored in a text column: that event's insert fails,
    the events grouped with it are stored all the same."""
    from hooks import store
    from hooks.models import Event

    results = await asyncio.gather(
        *(store.store_event(_event(n), 60) for n in range(5)),
        store.store_event(_event(99, query="a=\x00"), 60),
        *(store.store_event(_event(n), 60) for n in range(5, 10)),
        return_exceptions=True,
    )
    failed = [result for result in results if isinstance(result, BaseException)]
    assert len(failed) == 1 and results[5] is failed[0], results
    stored = [result.id for result in results if not isinstance(result, BaseException)]
    assert await Event.filter(id__in=stored).count() == 10
    assert await Event.all().count() == 10

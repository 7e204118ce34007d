"""Group commit: webhooks that arrive together are made durable by one transaction.

PostgreSQL serializes the commits of transactions that sent a `NOTIFY`: a cluster-wide
lock is taken before the commit and held until its WAL record is flushed. With one
transaction per webhook every commit waits for the previous one's flush, so ingest is
capped by the flush rate and by how fast the lock passes between backends, whatever the
pool size (measured here: about 3× fewer inserts per second than without the NOTIFY).

So a row is written at once when fewer than `max_in_flight` writes are under way;
otherwise it waits, and the next write takes every row that waited: one statement
inserts them and sends their NOTIFYs, one COMMIT makes them durable, and only then does
each caller return (and its request get its 202). Under light load each row goes alone
and nothing waits; under load the waits replace the serialized commits.

A failed write that is not "database unavailable" is retried row by row, so one bad row
fails only its own request, as it would have without grouping.

`write_rows` may answer one result per row (in order); `write()` returns its row's result
(for instance "this row repeats the event stored as evt_..." for a duplicate).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = Any
WriteRows = Callable[[list[Row]], Awaitable[Sequence[Any] | None]]


@dataclass
class _Waiting:
    row: Row
    size: int
    done: asyncio.Future


@dataclass
class _LoopState:
    """Rows waiting and writes under way in one event loop."""

    loop: asyncio.AbstractEventLoop
    queue: deque[_Waiting] = field(default_factory=deque)
    in_flight: int = 0
    writers: set[asyncio.Task] = field(default_factory=set)


class GroupCommit:
    def __init__(self, write_rows: WriteRows, *, max_in_flight: int, max_rows: int,
                 max_bytes: int, is_unavailable: Callable[[BaseException], bool]) -> None:
        self.write_rows = write_rows
        self.max_in_flight = max_in_flight
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.is_unavailable = is_unavailable
        self.writes = 0
        """Calls of `write_rows` so far (rows / writes is the mean group size)."""
        self.rows = 0
        """Rows handed to `write_rows` (a row retried alone counts again)."""
        self._state: _LoopState | None = None

    async def write(self, row: Row, size: int) -> Any:
        """Return once `row` is committed (with its result); raise what its write raised."""
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _LoopState(loop)
        done = loop.create_future()
        state.queue.append(_Waiting(row, size, done))
        if state.in_flight < self.max_in_flight:
            state.in_flight += 1
            # A fresh context: the writer must not inherit the caller's transaction.
            writer = loop.create_task(self._run(state), context=contextvars.Context())
            state.writers.add(writer)
            writer.add_done_callback(state.writers.discard)
        return await done

    def _take(self, queue: deque[_Waiting]) -> list[_Waiting]:
        batch: list[_Waiting] = []
        total = 0
        while queue and len(batch) < self.max_rows:
            waiting = queue[0]
            if batch and total + waiting.size > self.max_bytes:
                break
            queue.popleft()
            if not waiting.done.done():  # a cancelled request is not written
                batch.append(waiting)
                total += waiting.size
        return batch

    async def _run(self, state: _LoopState) -> None:
        try:
            while state.queue:
                batch = self._take(state.queue)
                if batch:
                    await self._write(batch)
        finally:
            state.in_flight -= 1

    async def _write(self, batch: list[_Waiting]) -> None:
        self.writes += 1
        self.rows += len(batch)
        try:
            results = await self.write_rows([waiting.row for waiting in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(batch) > 1 and not self.is_unavailable(exc):
                for waiting in batch:
                    await self._write([waiting])
                return
            _settle(batch, exc)
        except BaseException as exc:
            _settle(batch, exc)
            raise
        else:
            _settle(batch, None, results)


def _settle(batch: list[_Waiting], error: BaseException | None,
            results: Sequence[Any] | None = None) -> None:
    for index, waiting in enumerate(batch):
        if waiting.done.done():
            continue
        if error is None:
            waiting.done.set_result(results[index] if results is not None else None)
        elif isinstance(error, asyncio.CancelledError):
            waiting.done.cancel()
        else:
            waiting.done.set_exception(error)

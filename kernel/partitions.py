"""Daily partitions of the big tables: `event`, `delivery`, `attempt`, `rejected_request`.

Each table is `PARTITION BY RANGE (id)`. Ids start with the creation time in
milliseconds (kernel/ids.py), so one UTC day is one range of ids:
`['evt_<day start>0000000000000000', 'evt_<next day start>0000000000000000')`, and a
partition named `event_p20261206` holds the events created on 2026-12-06 (UTC).

Partitions are made ahead of time (today and the next `DAYS_AHEAD` days) by
`migrate`/`runrelay` and by every dispatcher each hour, so midnight never finds a day
without its partition. The safety net is a DEFAULT partition per table: a row whose id
falls in no day partition (the upkeep was down for a week, a clock far off, an id made
by hand) is stored there instead of failing the insert. Creating partitions on demand
would need every insert path to catch "no partition for row" and retry, and ingest must
not fail or slow down for housekeeping. Should rows land in the default partition for a
day that gets its partition later, `ensure_partitions` moves them into it.

Retention drops whole day partitions (relay/retention.py); the rows they must keep
(deliveries still active, their events and attempts) move to the default partition
first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from kernel.ids import lowest_id

log = logging.getLogger("relay.partitions")

PREFIXES: dict[str, str] = {
    "event": "evt",
    "delivery": "dlv",
    "attempt": "att",
    "rejected_request": "rej",
}
"""Each partitioned table and the prefix of its ids."""

DAYS_AHEAD = 7
UPKEEP_SECONDS = 3600.0
LONG_STATEMENT_TIMEOUT = 24 * 3600.0
"""Client-side timeout for statements whose time grows with the data (copies, index
builds): the pool's 30 s default is for live traffic."""

_UPKEEP_LOCK = 7_301_005
"""Advisory lock key: one process at a time creates, moves or drops partitions."""

_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")

Say = Callable[[str], None]


def id_bound(prefix: str, moment: datetime) -> str:
    """The smallest id of type `prefix` that can be created at `moment` (full length)."""
    return lowest_id(prefix, moment.timestamp())


ID_SLACK = timedelta(hours=1)
"""How far a row's id time may be from the time columns it is compared with (clocks of
different hosts, a row made a little before it is stamped)."""


def ids_between(prefix: str, since: datetime | None, until: datetime | None
                ) -> tuple[str | None, str | None]:
    """Id bounds [low, high) sure to hold every row of type `prefix` stamped in
    [since, until): added to a time filter, they let PostgreSQL skip other days."""
    low = id_bound(prefix, since - ID_SLACK) if since is not None else None
    high = id_bound(prefix, until + ID_SLACK) if until is not None else None
    return low, high


def ids_after(prefix: str, parent_id: str) -> str | None:
    """The lowest id of type `prefix` a row made after `parent_id` can have (rows are made
    after their parent: a delivery after its event, an attempt after its delivery)."""
    moment = moment_of_id(parent_id)
    return None if moment is None else id_bound(prefix, moment - ID_SLACK)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def day_bounds(table: str, day: date) -> tuple[str, str]:
    """The id range [low, high) of `table` for one UTC day."""
    prefix = PREFIXES[table]
    return id_bound(prefix, day_start(day)), id_bound(prefix, day_start(day + timedelta(days=1)))


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def moment_of_id(value: str) -> datetime | None:
    """When an id was created, or None for an id not made by kernel/ids.py."""
    _, _, rest = value.partition("_")
    if len(rest) < 10:
        return None
    millis = 0
    for char in rest[:10]:
        digit = "0123456789abcdefghjkmnpqrstvwxyz".find(char)
        if digit < 0:
            return None
        millis = millis * 32 + digit
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def day_of_id(value: str) -> date | None:
    """The UTC day an id was created, or None for an id not made by kernel/ids.py."""
    moment = moment_of_id(value)
    return None if moment is None else moment.date()


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class DayPartition:
    table: str
    day: date

    @property
    def name(self) -> str:
        return partition_name(self.table, self.day)

    @property
    def bounds(self) -> tuple[str, str]:
        return day_bounds(self.table, self.day)


async def is_partitioned(connection: asyncpg.Connection, table: str) -> bool:
    kind = await connection.fetchval(
        "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = $1 AND n.nspname = current_schema()", table)
    return bool(kind == "p")


PARTITIONS_OF = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                 " WHERE i.inhparent = $1::regclass")
"""The names of a table's partitions ($1: the table)."""


def parse_day_partitions(table: str, names: Iterable[str]) -> list[DayPartition]:
    """The day partitions of `table` among partition `names`, oldest first."""
    found = []
    for name in names:
        match = _NAME.match(name)
        if match and match["table"] == table:
            found.append(DayPartition(table, datetime.strptime(match["day"], "%Y%m%d").date()))
    return sorted(found, key=lambda part: part.day)


async def day_partitions(connection: asyncpg.Connection, table: str) -> list[DayPartition]:
    """The day partitions `table` has now, oldest first (the default partition left out)."""
    rows = await connection.fetch(PARTITIONS_OF, table)
    return parse_day_partitions(table, (row["relname"] for row in rows))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def create_partition(connection: asyncpg.Connection, table: str, day: date) -> bool:
    """Make `table`'s partition for `day` unless it exists; returns whether it made it.

    Rows already stored in the default partition for that day move into the new
    partition in the same transaction (PostgreSQL refuses to create a partition whose
    rows sit in the default one)."""
    name = partition_name(table, day)
    low, high = day_bounds(table, day)
    bounds = f"FOR VALUES FROM ({_quote(low)}) TO ({_quote(high)})"
    async with connection.transaction():
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if exists:
            return False
        default = default_name(table)
        stray = await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {default} WHERE id >= $1 AND id < $2)",  # noqa: S608
            low, high)
        if not stray:
            await connection.execute(f"CREATE TABLE {name} PARTITION OF {table} {bounds}")
            return True
        await connection.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
        await connection.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        moved = await connection.execute(
            f"WITH gone AS (DELETE FROM {default} WHERE id >= $1 AND id < $2 RETURNING *)"  # noqa: S608
            f" INSERT INTO {name} SELECT * FROM gone", low, high,
            timeout=LONG_STATEMENT_TIMEOUT)
        await connection.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} {bounds}",
                                 timeout=LONG_STATEMENT_TIMEOUT)
        log.warning("partitions: moved %s rows of %s from %s into the new partition %s",
                    moved.split()[-1], table, default, name)
        return True


async def ensure_partitions(connection: asyncpg.Connection, first: date | None = None,
                            last: date | None = None,
                            tables: tuple[str, ...] = tuple(PREFIXES)) -> list[str]:
    """Make the day partitions from `first` (default today, UTC) to `last` (default
    `DAYS_AHEAD` days later) that are missing; returns the names it made. Safe to run
    from several processes at once."""
    first = first or today()
    last = last or first + timedelta(days=DAYS_AHEAD)
    made: list[str] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _UPKEEP_LOCK)
        for table in tables:
            if not await is_partitioned(connection, table):
                continue
            for day in days(first, last):
                if await create_partition(connection, table, day):
                    made.append(partition_name(table, day))
    return made


def start_upkeep(pool_connection: Callable[[], AbstractAsyncContextManager[Any]],
                 interval_seconds: float = UPKEEP_SECONDS) -> asyncio.Task[None]:
    """Every `interval_seconds`, make the partitions of the coming days; returns the task.

    `pool_connection()` is an async context manager giving an asyncpg connection."""

    async def loop() -> None:
        while True:
            try:
                async with pool_connection() as connection:
                    made = await ensure_partitions(connection)
                if made:
                    log.info("partitions: made %s", ", ".join(made))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("partitions: making the coming days' partitions failed; "
                              "retrying in %.0f s (inserts go to the default partition "
                              "meanwhile)", interval_seconds)
            await asyncio.sleep(interval_seconds)

    return asyncio.get_running_loop().create_task(loop(), name="relay-partition-upkeep")

"""Apply Relay's schema migrations (Tortoise's migration engine), printing each step."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from tortoise.migrations.api import migrate as tortoise_migrate

from relay.database import connection_params, database_url, tortoise_config

Say = Callable[[str], None]

_say: Say = print


def report_progress(line: str) -> None:
    """Print a line of a long migration's progress where `apply_migrations` prints."""
    _say(line)


async def apply_migrations(say: Say = print, target: str | None = None) -> None:
    """Bring the database to the current schema (or to `target`, e.g. `0003_endpoint_kind`)
    and make the coming days' partitions; a no-op when all is current."""
    global _say
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event.endswith("start"):
            say(f"  applying {app_label}.{name} ...")
        elif event.endswith("success") or event.endswith("done") or event.endswith("end"):
            applied.append(name)

    previous, _say = _say, say
    try:
        await tortoise_migrate(config=tortoise_config(), progress=progress, target=target)
    finally:
        _say = previous
    say(f"Migrations applied: {len(applied)}" if applied else "No migrations to apply: the schema is current.")
    if target is None:
        await _make_coming_partitions(say)


async def _make_coming_partitions(say: Say) -> None:
    from relay.partitions import ensure_partitions

    connection = await asyncpg.connect(**connection_params(database_url()))
    try:
        made = await ensure_partitions(connection)
    finally:
        await connection.close()
    if made:
        say(f"Partitions made for the coming days: {len(made)}")

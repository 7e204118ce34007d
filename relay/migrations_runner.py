"""Apply Relay's schema migrations (Tortoise's migration engine), printing each step."""

from __future__ import annotations

from collections.abc import Callable

from tortoise.migrations.api import migrate as tortoise_migrate

from kernel.database import tortoise_config


async def apply_migrations(say: Callable[[str], None] = print) -> None:
    """Bring the database to the current schema; a no-op when it already is."""
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event.endswith("start"):
            say(f"  applying {app_label}.{name} ...")
        elif event.endswith("success") or event.endswith("done") or event.endswith("end"):
            applied.append(name)

    await tortoise_migrate(config=tortoise_config(), progress=progress)
    say(f"Migrations applied: {len(applied)}" if applied else "No migrations to apply: the schema is current.")

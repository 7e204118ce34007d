from typing import Any

from django.core.management.base import BaseCommand

from kernel.commands import run_with_database
from relay.migrations_runner import apply_migrations


class Command(BaseCommand):
    help = "Apply Relay's database migrations (idempotent)."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        async def work() -> None:
            await apply_migrations(say=self.stdout.write)

        run_with_database(work)

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kernel.commands import run_with_database
from kernel.tokens import revoke_tokens


class Command(BaseCommand):
    help = "Revoke an API token by its id (tok_…) or every token with a name."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("token", help="the token's id (tok_…) or name")

    def handle(self, *args: Any, **options: Any) -> None:
        async def work() -> int:
            return await revoke_tokens(options["token"])

        count = run_with_database(work)
        if not count:
            raise CommandError(f"no live token has the id or name {options['token']!r}")
        self.stdout.write(f"Revoked {count} token(s).")

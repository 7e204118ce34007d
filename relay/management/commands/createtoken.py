from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kernel.commands import run_with_database
from kernel.models import SCOPES, ApiToken
from kernel.tokens import create_token


class Command(BaseCommand):
    help = "Create an API token; the token is printed alone on the last line, once."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="who or what the token is for")
        parser.add_argument("--scope", default="admin", choices=SCOPES)

    def handle(self, *args: Any, **options: Any) -> None:
        async def work() -> tuple[ApiToken, str]:
            return await create_token(options["name"], options["scope"])

        try:
            row, token = run_with_database(work)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created {row.scope} token {row.id} ({row.name}). Store it now: "
                          "it is not shown again.")
        self.stdout.write(token)

import asyncio

from django.core.management.base import BaseCommand
from tortoise.cli.cli import CLIContext, makemigrations

from relay.database import tortoise_config


class Command(BaseCommand):
    help = "Developers: write a new schema migration from the Tortoise models."
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", default=None)
        parser.add_argument("--empty", action="store_true")

    def handle(self, *args, **options) -> None:
        import relay.database

        relay.database.CLI_CONFIG = tortoise_config()  # type: ignore[attr-defined]
        ctx = CLIContext(config="relay.database.CLI_CONFIG", config_file=None)
        asyncio.run(makemigrations(ctx, ("relay",), options["empty"], options["name"]))

import asyncio
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from tortoise.cli.cli import CLIContext, makemigrations

from kernel.database import tortoise_config

CLI_CONFIG: dict[str, Any] = {}
"""Tortoise's command line reads its configuration from a dotted path: this one."""


class Command(BaseCommand):
    help = "Developers: write a new schema migration from the Tortoise models."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", default=None)
        parser.add_argument("--empty", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        CLI_CONFIG.clear()
        CLI_CONFIG.update(tortoise_config())
        ctx = CLIContext(config=f"{__name__}.CLI_CONFIG", config_file=None)
        asyncio.run(makemigrations(ctx, ("relay",), options["empty"], options["name"]))

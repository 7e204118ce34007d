"""Shared plumbing for management commands: run a coroutine with the database up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.core.management.base import CommandError

from kernel.database import start_database, stop_database, wait_for_database

T = TypeVar("T")


def run_with_database(work: Callable[[], Awaitable[T]], *, timeout: float = 30.0) -> T:
    async def main() -> T:
        try:
            await wait_for_database(timeout=timeout)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        await start_database()
        try:
            return await work()
        finally:
            await stop_database()

    return asyncio.run(main())

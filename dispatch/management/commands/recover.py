from argparse import ArgumentParser
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kernel.commands import run_with_database


def parse_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--{name} {value!r} is not an ISO 8601 time "
                           "(e.g. 2026-01-31T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = ("Re-deliver an endpoint's failed deliveries created in a time window: they go "
            "back to pending with a fresh retry schedule (their attempts are kept).")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--endpoint", required=True, help="the endpoint id (ep_…)")
        parser.add_argument("--since", required=True, help="ISO 8601 time, inclusive")
        parser.add_argument("--until", default=None, help="ISO 8601 time, exclusive (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_time("since", options["since"])
        if since is None:
            raise CommandError("--since is required")
        until = parse_time("until", options["until"]) or datetime.now(UTC)
        if until <= since:
            raise CommandError("--until must be later than --since")
        endpoint_id = options["endpoint"]

        def progress(count: int) -> None:
            self.stdout.write(f"  {count:,} deliveries put back so far ...")
            self.stdout.flush()

        async def work() -> int:
            from dispatch.actions import recover_endpoint
            from dispatch.models import Endpoint

            if not await Endpoint.exists(id=endpoint_id, deleted_at=None):
                raise CommandError(f"no endpoint with id {endpoint_id!r}")
            return await recover_endpoint(endpoint_id, since, until, progress)

        self.stdout.write(f"Recovering failed deliveries of {endpoint_id} created from "
                          f"{since.isoformat()} to {until.isoformat()} ...")
        count = run_with_database(work)
        self.stdout.write(f"Recovered {count:,} failed deliveries; the dispatchers deliver "
                          "them now.")

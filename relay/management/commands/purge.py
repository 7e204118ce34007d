from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from relay.commands import run_with_database
from relay.retention import DEFAULT_BATCH_SIZE, DEFAULT_SHARE, describe, purge_expired


class Command(BaseCommand):
    help = ("Remove events (with their deliveries and attempts) older than the retention "
            "(RELAY_RETENTION_DAYS) whose deliveries are all final, and refused requests "
            "older than 7 days: whole days are dropped (what is still in flight is kept), "
            "the rest is deleted in batches. Safe to run while Relay runs.")
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help=f"keep this many days (default RELAY_RETENTION_DAYS, now "
                                 f"{settings.RELAY_RETENTION_DAYS})")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help="rows per transaction when deleting row by row (default %(default)s)")
        parser.add_argument("--share", type=float, default=DEFAULT_SHARE,
                            help="part of the time spent deleting row by row, the rest left to "
                                 "live traffic: 1 deletes flat out (default %(default)s)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be removed; delete nothing")

    def handle(self, *args, **options) -> None:
        say = self.stdout.write

        async def work() -> dict:
            return await purge_expired(
                days=options["days"], batch_size=options["batch_size"],
                dry_run=options["dry_run"], say=lambda line: (say(line), self.stdout.flush()),
                share=options["share"],
            )

        try:
            report = run_with_database(work)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        say(describe(report))

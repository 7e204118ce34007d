import asyncio
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dispatch.service import quiet_garbage_collector, stop_on_signals
from relay.bus import bus
from relay.database import (
    connection_params,
    database_url,
    start_database,
    stop_database,
    wait_for_database,
)
from relay.supervisor import exit_with_parent


def run_event_loop(main) -> None:
    """uvloop when installed (it comes with uvicorn[standard], as under `runrelay`): the
    dispatcher spends most of its CPU in the event loop and the HTTP client."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def describe_database() -> str:
    if not settings.RELAY_DATABASE_URL:
        return f"embedded PostgreSQL in {settings.RELAY_DATA_DIR / 'pgdata'}"
    params = connection_params(settings.RELAY_DATABASE_URL)
    return f"{params['user']}@{params['host']}:{params['port']}/{params['database']}"


class Command(BaseCommand):
    help = ("Run a dispatcher only: route stored events to endpoints and deliver them, with "
            "retries. Run as many as you like, on any hosts, against the same database.")
    requires_system_checks: list = []
    supervised = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("--concurrency", type=int, default=None,
                            help="requests in flight at most (default RELAY_DISPATCH_CONCURRENCY)")
        parser.add_argument("--supervised", action="store_true",
                            help="started by runrelay: one line at start, exit with it")

    def handle(self, *args, **options) -> None:
        concurrency = options["concurrency"] or settings.RELAY_DISPATCH_CONCURRENCY
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        say = self.stdout.write
        self.supervised = options["supervised"]
        if self.supervised:
            exit_with_parent()
            self.stdout.flush()
            run_event_loop(self.run(concurrency))
            return
        allowlist = ", ".join(settings.RELAY_TARGET_ALLOWLIST) or "none"
        say(f"Dispatcher (pid {os.getpid()}) starting")
        say(f"  database:     {describe_database()}")
        say(f"  concurrency:  {concurrency} requests in flight")
        say(f"  allow-listed: {allowlist} (RELAY_TARGET_ALLOWLIST; every other private or "
            "local address is refused)")
        say(f"  timeout:      {settings.RELAY_DELIVERY_TIMEOUT:g} s; retry schedule "
            f"{', '.join(f'{d:g}' for d in settings.RELAY_RETRY_SCHEDULE)} s")
        if not settings.RELAY_REDIS_URL:
            say("  live view:    through PostgreSQL (LISTEN/NOTIFY); set RELAY_REDIS_URL to "
                "use Redis instead")
        self.stdout.flush()
        run_event_loop(self.run(concurrency))
        say("Dispatcher stopped.")

    async def run(self, concurrency: int) -> None:
        from dispatch.worker import Dispatcher

        say = self.stdout.write
        try:
            await wait_for_database(database_url())
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        await start_database()
        bus.start()
        stop = asyncio.Event()
        stop_on_signals(stop)
        dispatcher = Dispatcher(concurrency=concurrency)
        try:
            await dispatcher.start()
            quiet_garbage_collector()
            if self.supervised:
                say(f"Dispatcher (pid {os.getpid()}) dispatching as {dispatcher.owner}.")
            else:
                say(f"Dispatching as {dispatcher.owner}. Press Ctrl-C (or send SIGTERM) to stop.")
            self.stdout.flush()
            await stop.wait()
            if not self.supervised:
                say(f"Stopping: deliveries in flight get {dispatcher.shutdown_grace:g} s to finish ...")
                self.stdout.flush()
            await dispatcher.stop()
        finally:
            await bus.stop()
            await stop_database()

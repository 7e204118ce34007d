import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from relay.commands import run_with_database
from relay.database import database_url
from relay.migrations_runner import apply_migrations
from relay.supervisor import ChildSpec, Supervisor, child_environment
from relay.tokens import create_token, has_tokens

MANAGE = Path(__file__).resolve().parents[3] / "manage.py"
CONNECTION_EXTRAS = 2
"""Connections a process opens besides its pool: the live stream's LISTEN and NOTIFY
connections (a dispatcher's LISTEN for new work is one of the two's worth: see below)."""
DISPATCHER_EXTRA = 1
SPARE_CONNECTIONS = 10
"""Left free for management commands, psql and PostgreSQL's reserved slots."""


def default_workers() -> int:
    """One per CPU, at most 4: the web workers share the port, so more cores serve more
    requests; beyond 4 a deployment is better split over hosts (docs/running.md)."""
    return max(1, min(os.cpu_count() or 1, 4))


def pool_size(configured: int, max_connections: int, processes: int,
              dispatchers: int) -> int:
    """The asyncpg pool size each process gets so that all of them together stay under
    PostgreSQL's `max_connections` (0: they cannot, even with a pool of 2)."""
    if processes == 0:
        return configured
    free = max_connections - SPARE_CONNECTIONS - processes * CONNECTION_EXTRAS - dispatchers
    each = min(configured, free // processes)
    return each if each >= 2 else 0


def listen_socket(host: str, port: int) -> socket.socket:
    """Bound and listening, inheritable by the web workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Command(BaseCommand):
    help = ("Run Relay: migrations, web workers and dispatchers as supervised processes. "
            "Starts an embedded PostgreSQL when RELAY_DATABASE_URL is not set.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=None, metavar="N",
                            help="web worker processes sharing the port (default: one per "
                                 f"CPU, at most 4: {default_workers()} here)")
        parser.add_argument("--dispatchers", type=int, default=None, metavar="M",
                            help="dispatcher processes (default: one per CPU, at most 4: "
                                 f"{default_workers()} here)")
        parser.add_argument("--no-dispatcher", action="store_true",
                            help="serve HTTP only (run `manage.py dispatch` elsewhere)")

    def handle(self, *args: Any, **options: Any) -> None:
        say = self.stdout.write
        # SIGTERM while starting: exit normally, so the embedded PostgreSQL is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        web_workers = options["web_workers"] or default_workers()
        dispatchers = 0 if options["no_dispatcher"] else (
            default_workers() if options["dispatchers"] is None else options["dispatchers"])
        if web_workers < 1 or dispatchers < 0:
            raise CommandError("--web-workers must be at least 1 and --dispatchers at least 0")
        host, port = options["host"], options["port"]
        try:
            listener = listen_socket(host, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}; pick another --port") from exc

        if settings.RELAY_DATABASE_URL:
            say("Using the database at RELAY_DATABASE_URL.")
        else:
            say(f"Starting the embedded PostgreSQL in {settings.RELAY_DATA_DIR / 'pgdata'} ...")
            database_url()
            say("  PostgreSQL is up.")

        async def prepare() -> tuple[str | None, int]:
            from tortoise import connections

            await apply_migrations(say=lambda line: say(f"  {line}"))
            rows = await connections.get("default").execute_query_dict("SHOW max_connections")
            max_connections = int(rows[0]["max_connections"])
            if await has_tokens():
                return None, max_connections
            _, token = await create_token("admin (created by runrelay)", "admin")
            return token, max_connections

        say("Applying migrations ...")
        first_token, max_connections = run_with_database(prepare)
        processes = web_workers + dispatchers
        pool = pool_size(settings.RELAY_DATABASE_POOL_SIZE, max_connections, processes,
                         dispatchers)
        if pool == 0:
            raise CommandError(
                f"{web_workers} web workers and {dispatchers} dispatchers need more database "
                f"connections than PostgreSQL's max_connections ({max_connections}) allows: "
                "use fewer (--web-workers, --dispatchers) or raise max_connections")
        if pool < settings.RELAY_DATABASE_POOL_SIZE:
            say(f"  {processes} processes share max_connections = {max_connections}: "
                f"each gets a pool of {pool} (RELAY_DATABASE_POOL_SIZE is "
                f"{settings.RELAY_DATABASE_POOL_SIZE}).")

        env = child_environment(
            os.environ, RELAY_DATABASE_URL=database_url(),
            RELAY_DATA_DIR=str(settings.RELAY_DATA_DIR),
            RELAY_DATABASE_POOL_SIZE=str(pool))
        fd = listener.fileno()
        specs = [ChildSpec(f"web worker {n}",
                           [sys.executable, "-m", "relay.webserver", "--fd", str(fd)],
                           pass_fds=(fd,))
                 for n in range(1, web_workers + 1)]
        specs += [ChildSpec(f"dispatcher {n}",
                            [sys.executable, str(MANAGE), "dispatch", "--supervised"])
                  for n in range(1, dispatchers + 1)]

        shown_host = f"[{host}]" if ":" in host else host
        base = f"http://{shown_host}:{port}"
        say("")
        say(f"Relay is running at {base}: {web_workers} web worker(s), "
            f"{dispatchers} dispatcher(s)")
        say(f"  dashboard:  {base}/dashboard/")
        say(f"  API docs:   {base}/api/v1/docs")
        say(f"  ingest:     {base}/in/<source-slug>")
        say(f"  CLI:        .venv/bin/relay login --url {base} --token {first_token or '<token>'}"
            " (then relay listen --forward-to URL; see docs/cli.md)")
        if first_token:
            say("")
            say("First start: an admin API token was created. Store it now, it is not shown again:")
            say(f"  {first_token}")
        say("Press Ctrl-C to stop.")
        self.stdout.flush()

        def report(line: str) -> None:
            say(line)
            self.stdout.flush()

        # Dispatchers get RELAY_SHUTDOWN_GRACE for deliveries in flight, then up to 10 s
        # to record them; web workers as long for requests in flight.
        supervisor = Supervisor(specs, env=env, say=report,
                                grace=settings.RELAY_SHUTDOWN_GRACE + 15)
        try:
            code = supervisor.run()
        finally:
            listener.close()
        if code != 0:
            raise CommandError("Relay stopped because its processes kept crashing.")
        say("Relay stopped.")

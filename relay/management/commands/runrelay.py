import signal
import sys

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from relay.commands import run_with_database
from relay.database import database_url
from relay.migrations_runner import apply_migrations
from relay.tokens import create_token, has_tokens


class Command(BaseCommand):
    help = ("Run everything in one process: migrations, web server and dispatcher. "
            "Starts an embedded PostgreSQL when RELAY_DATABASE_URL is not set.")
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-dispatcher", action="store_true",
                            help="serve HTTP only (run `manage.py dispatch` elsewhere)")

    def handle(self, *args, **options) -> None:
        say = self.stdout.write
        if settings.RELAY_DATABASE_URL:
            say("Using the database at RELAY_DATABASE_URL.")
        else:
            say(f"Starting the embedded PostgreSQL in {settings.RELAY_DATA_DIR / 'pgdata'} ...")
            database_url()
            say("  PostgreSQL is up.")

        async def prepare() -> str | None:
            await apply_migrations(say=lambda line: say(f"  {line}"))
            if await has_tokens():
                return None
            _, token = await create_token("admin (created by runrelay)", "admin")
            return token

        say("Applying migrations ...")
        first_token = run_with_database(prepare)

        if not options["no_dispatcher"]:
            from dispatch.service import run_dispatcher_in_web_process

            run_dispatcher_in_web_process()

        host, port = options["host"], options["port"]
        shown_host = f"[{host}]" if ":" in host else host
        base = f"http://{shown_host}:{port}"
        say("")
        say(f"Relay is running at {base}")
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

        config = uvicorn.Config(
            "relay.asgi:application", host=host, port=port, lifespan="on",
            http="httptools", loop="uvloop", log_level="warning",
            ws_max_size=1 << 20, h11_max_incomplete_event_size=64 * 1024,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal that stopped it once it has shut down; for SIGTERM
        # that would kill the process without running exit handlers, leaving the
        # embedded PostgreSQL running. Turn it into a normal exit instead.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.run()
        except (SystemExit, KeyboardInterrupt):
            pass
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}; pick another --port") from exc
        if not server.started:
            raise CommandError(f"Relay did not start on {host}:{port}; see the messages above")
        say("Relay stopped.")

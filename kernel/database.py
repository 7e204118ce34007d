"""The database: where it is (configured or embedded), Tortoise's config, start and stop.

Which model modules Tortoise loads, and where the migrations are, is the wiring's choice
(`RELAY_MODEL_MODULES`, `RELAY_MIGRATIONS_PACKAGE` in relay/settings.py): the kernel
knows no app.

Tortoise 1.x keeps its state in a context variable; `_enable_global_fallback=True` makes
the state set up in one task (uvicorn's lifespan, a management command) visible to all.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from django.conf import settings
from tortoise import Tortoise
from tortoise.exceptions import DBConnectionError, OperationalError

from kernel.causes import exception_chain

log = logging.getLogger("relay.database")

EVENT_CHANNEL = "relay_events"
"""`NOTIFY` channel: ingest and publish send the new event id on it, the dispatcher listens."""

KEPT_PLAN_SETTINGS: tuple[tuple[str, str], ...] = (
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("jit", "off"),
)
"""How Relay runs its hot statements over partitioned tables (routing, claims, settles,
the ingest's duplicate lookup), set for their transaction only.

A generic plan: planning such a statement over every partition costs more than running
it, and PostgreSQL would otherwise re-plan it on every call. No sequential scans: a
connection keeps its generic plan for as long as it lives, and one made while today's
partition held a page or two would read the whole partition on every call, slower with
every row of the day; every table these statements read has the index they need. No
JIT: a plan that still had to scan would look dear enough to be compiled on each call."""


def set_local(settings: tuple[tuple[str, str], ...] = KEPT_PLAN_SETTINGS) -> str:
    """The settings as `SET LOCAL` commands (for a simple-protocol `BEGIN; ...`)."""
    return "; ".join(f"SET LOCAL {name} = {value}" for name, value in settings)


def set_config_calls(settings: tuple[tuple[str, str], ...] = KEPT_PLAN_SETTINGS) -> str:
    """The settings as `set_config(..., true)` calls (inside a statement that has
    parameters, where `SET` cannot go)."""
    return ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings)


_embedded_url: str | None = None


def embedded_database_url() -> str:
    """Start (or join) the embedded PostgreSQL in RELAY_DATA_DIR and return its URL.

    pgserver shares one server between every process that asks for the same data
    directory and stops it when the last of them exits, so `runrelay` and any
    management command can run side by side.
    """
    global _embedded_url
    if _embedded_url is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            pgdata = settings.RELAY_DATA_DIR / "pgdata"
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
            _embedded_url = server.get_uri()
    return _embedded_url


def database_url() -> str:
    return settings.RELAY_DATABASE_URL or embedded_database_url()


def connection_params(url: str) -> dict[str, Any]:
    """Split a postgres:// URL (a unix-socket `?host=/dir` included) into asyncpg arguments."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"RELAY_DATABASE_URL must start with postgresql://, not {parts.scheme}://")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or "localhost"
    return {
        "host": unquote(host),
        "port": int(query.pop("port", None) or parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/") or "postgres"),
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool release hook that skips asyncpg's default reset query.

    Relay never leaves session state on pooled connections (no LISTEN, no session
    advisory locks, no SET), and asyncpg still rolls back an open transaction before
    calling this, so the reset's extra round trip per request buys nothing.
    """


def tortoise_config(url: str | None = None) -> dict[str, Any]:
    params = connection_params(url or database_url())
    return {
        "connections": {
            "default": {
                "engine": "tortoise.backends.asyncpg",
                "credentials": {
                    **params,
                    "minsize": 1,
                    "maxsize": settings.RELAY_DATABASE_POOL_SIZE,
                    "reset": _keep_session,
                    "command_timeout": 30,
                },
            }
        },
        "apps": {
            "relay": {
                "models": settings.RELAY_MODEL_MODULES,
                "default_connection": "default",
                "migrations": settings.RELAY_MIGRATIONS_PACKAGE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def start_database(url: str | None = None) -> None:
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)


async def stop_database() -> None:
    await Tortoise.close_connections()


async def wait_for_database(url: str | None = None, timeout: float = 30.0) -> None:
    """Block until PostgreSQL accepts connections, saying what it waits for."""
    params = connection_params(url or database_url())
    deadline = asyncio.get_running_loop().time() + timeout
    warned = False
    while True:
        try:
            connection = await asyncpg.connect(**params, timeout=5)
            await connection.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"PostgreSQL at {params['host']}:{params['port']} is not reachable ({exc}); "
                    "check RELAY_DATABASE_URL and that the server is running"
                ) from exc
            if not warned:
                log.warning("waiting for PostgreSQL at %s:%s: %s", params["host"], params["port"], exc)
                warned = True
            await asyncio.sleep(0.5)


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    DBConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # A pooled connection the server dropped mid-operation (seen while PostgreSQL shuts
    # down): asyncpg refuses to start the next statement on it, before sending anything.
    asyncpg.InternalClientError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` means "PostgreSQL cannot be reached now" (answer 503, retry later)."""
    return any(
        isinstance(current, UNAVAILABLE_ERRORS)
        or (isinstance(current, OperationalError) and "connection" in str(current).lower())
        for current in exception_chain(exc))


def is_undefined_table(exc: BaseException) -> bool:
    """True when `exc` says a table named in the statement does not exist (a partition
    dropped since its name was read)."""
    return any(isinstance(current, asyncpg.exceptions.UndefinedTableError)
               for current in exception_chain(exc))

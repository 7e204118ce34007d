"""Shared fixtures: a real PostgreSQL, Relay served by a real uvicorn on 127.0.0.1, and a
suite-wide safety net that fails any test that connects anywhere but loopback."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import tempfile

import pytest

from tests.servers import PgCluster, free_port

# --- Settings: before Django is imported anywhere ------------------------------------------

_PG_PORT = free_port()
os.environ["RELAY_DATABASE_URL"] = os.environ.get(
    "RELAY_TEST_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{_PG_PORT}/relay_test"
)
_TMP = tempfile.mkdtemp(prefix="relay-tests-")
"""Everything the suite makes in the temporary directory goes here (clusters, data dirs,
logs): removed when the run passes, kept (and named) when it fails."""
os.chmod(_TMP, 0o711)  # PostgreSQL runs as another user when the suite runs as root
tempfile.tempdir = _TMP
os.environ["TMPDIR"] = _TMP  # and the servers and commands the tests start
_DATA_DIR = tempfile.mkdtemp(prefix="relay-test-data-")
os.environ.setdefault("RELAY_DATA_DIR", _DATA_DIR)
os.environ.setdefault("RELAY_METRICS_DIR", os.path.join(_DATA_DIR, "metrics"))
os.environ.setdefault("RELAY_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("RELAY_TARGET_ALLOWLIST", "127.0.0.1")
os.environ.setdefault("RELAY_RETRY_SCHEDULE", "0.2,0.4,0.8")
os.environ["DJANGO_SETTINGS_MODULE"] = "relay.settings"
os.environ.pop("RELAY_REDIS_URL", None)

import django  # noqa: E402

django.setup()

# --- Safety net: loopback only -------------------------------------------------------------

_forbidden: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host is None:
        return True  # AF_UNIX path
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            _forbidden.append(repr(address))
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return real(self, address)

    return connect


socket.socket.connect = _guarded(_real_connect)
socket.socket.connect_ex = _guarded(_real_connect_ex)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(_TMP, ignore_errors=True)
    else:
        print(f"\nThe run's temporary files (logs, databases) are kept in {_TMP}")


@pytest.fixture(autouse=True)
def _loopback_only():
    start = len(_forbidden)
    yield
    assert len(_forbidden) == start, f"non-loopback connect() attempted: {_forbidden[start:]}"


# --- PostgreSQL -----------------------------------------------------------------------------

TABLES = ["alert_state", "alert", "attempt", "delivery", "endpoint", "rejected_request", "event",
          "event_unrouted", "source", "api_token", "endpoint_rollup", "source_rollup",
          "dashboard_session"]


@pytest.fixture(scope="session")
def pg_cluster():
    if os.environ.get("RELAY_TEST_DATABASE_URL"):
        yield None
        return
    cluster = PgCluster(_PG_PORT)
    cluster.init()
    cluster.start()
    import asyncpg

    async def create_db():
        conn = await asyncpg.connect(cluster.url)
        await conn.execute("CREATE DATABASE relay_test")
        await conn.close()

    import asyncio

    asyncio.run(create_db())
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
async def database(pg_cluster):
    """Relay's schema, migrated once per session, and Tortoise started on it."""
    from kernel.database import start_database, stop_database
    from relay.migrations_runner import apply_migrations

    await apply_migrations(say=lambda line: None)
    await start_database()
    yield
    await stop_database()


@pytest.fixture
async def db(database):
    """An empty database for this test."""
    from tortoise import connections

    from hooks import sources
    from hooks.store import rejection_log

    # DELETE, not TRUNCATE: TRUNCATE makes and fsyncs new files for every table (~120 ms).
    await connections.get("default").execute_script(
        "; ".join(f"DELETE FROM {table}" for table in TABLES)
    )
    sources._cache.clear()
    rejection_log._counts.clear()
    yield


# --- Relay over real HTTP ----------------------------------------------------------------------


@pytest.fixture(scope="session")
async def relay_server(database):
    """Relay's ASGI app under uvicorn on 127.0.0.1 (same event loop as the tests), with
    the settings `runrelay`'s web workers use."""
    import asyncio

    import uvicorn

    from relay.asgi import application
    from relay.webserver import uvicorn_config

    port = free_port()
    config = uvicorn_config(application, host="127.0.0.1", port=port, lifespan="off",
                            loop="asyncio")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    from tests.servers import wait_until

    await wait_until(lambda: server.started, message="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


_SSL_CONTEXT = ssl.create_default_context()
"""One for every client: httpx builds one per client (~90 ms) though tests speak plain HTTP."""


@pytest.fixture
async def client(relay_server, db):
    import httpx

    async with httpx.AsyncClient(base_url=relay_server, timeout=10, verify=_SSL_CONTEXT) as http:
        yield http


@pytest.fixture
async def admin_token(db):
    from kernel.tokens import create_token

    _, token = await create_token("test admin", "admin")
    return token


@pytest.fixture
async def viewer_token(db):
    from kernel.tokens import create_token

    _, token = await create_token("test viewer", "viewer")
    return token


@pytest.fixture
def admin(admin_token):
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def viewer(viewer_token):
    return {"Authorization": f"Bearer {viewer_token}"}

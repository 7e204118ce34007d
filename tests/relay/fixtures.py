"""Faster versions of two shared fixtures (same behaviour as tests/conftest.py's), used by
tests/hooks and tests/relay through their conftest.py.

- `db`: DELETE instead of TRUNCATE. TRUNCATE makes new files for every table and fsyncs
  them: about 120 ms per test on this machine; DELETE of a few rows takes about 1 ms.
- `client`: one SSL context for every client. httpx builds a new one (loading the CA
  bundle) per client, about 90 ms, though these clients only speak plain HTTP to loopback.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests.conftest import TABLES

_SSL_CONTEXT = ssl.create_default_context()


@pytest.fixture
async def db(database):
    """An empty database for this test."""
    from tortoise import connections

    from hooks import sources
    from hooks.store import rejection_log

    await connections.get("default").execute_script(
        "; ".join(f"DELETE FROM {table}" for table in TABLES)
    )
    sources._cache.clear()
    rejection_log._counts.clear()
    yield


@pytest.fixture
async def client(relay_server, db):
    async with httpx.AsyncClient(base_url=relay_server, timeout=10,
                                 verify=_SSL_CONTEXT) as http:
        yield http

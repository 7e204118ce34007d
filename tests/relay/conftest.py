"""Fixtures of the relay tests (faster `db` and `client`: see tests/relay/fixtures.py)."""

from tests.relay.fixtures import client, db  # noqa: F401

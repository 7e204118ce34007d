"""Fixtures of the hooks tests (defined in tests/hooks/fixtures.py and tests/relay/fixtures.py)."""

from tests.hooks.fixtures import event_count, make_source  # noqa: F401
from tests.relay.fixtures import client, db  # noqa: F401

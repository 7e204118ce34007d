"""Fixtures of the hooks tests (defined in tests/hooks/fixtures.py)."""

from tests.hooks.fixtures import event_count, make_source  # noqa: F401

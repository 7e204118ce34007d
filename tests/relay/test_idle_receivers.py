"""The Django receivers the handler disconnects are only those with nothing to do in Relay's
configuration (no Django database, in-process caches); Django's own URLconf reset stays."""

from __future__ import annotations

import pytest
from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, reset_queries
from django.test import override_settings

from kernel.handler import InlineASGIHandler, drop_idle_receivers


def connected(signal, receiver) -> bool:
    return any(key[0] == id(receiver) for key, *_ in signal.receivers)


def test_receivers_with_nothing_to_do_are_disconnected():
    InlineASGIHandler()
    assert not connected(signals.request_started, reset_queries)
    assert not connected(signals.request_started, close_old_connections)
    assert not connected(signals.request_finished, close_old_connections)
    assert not connected(signals.request_finished, close_caches)
    assert connected(signals.request_finished, reset_urlconf)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_they_stay_when_django_has_a_database_or_a_shared_cache():
    signals.request_started.connect(reset_queries)
    signals.request_finished.connect(close_caches)
    try:
        with override_settings(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                "LOCATION": "redis://127.0.0.1:1"}},
        ):
            assert drop_idle_receivers() == []
            assert connected(signals.request_started, reset_queries)
            assert connected(signals.request_finished, close_caches)
    finally:
        drop_idle_receivers()
    assert not connected(signals.request_started, reset_queries)

"""A Django ASGI handler without the per-request thread.

Django 5.2's ASGIHandler wraps every request in a new `ThreadSensitiveContext` and runs
`request_started`/`request_finished` receivers and `response.close()` through
`sync_to_async`: thread hops on every request, with the event loop waiting on them. Relay's views are all async and its signal receivers are cheap
and non-blocking, so this handler calls them inline. Everything else (middleware,
URL resolution, exception handling, response encoding) is Django's own code.

It also takes the body the limits guard already read (`scope["relay.body"]`) instead
of copying it into a temporary file, and does not cancel a view when the client
disconnects: an ingest that has begun its insert must commit or roll back whole.

Django hooks `reset_queries` and `close_old_connections` (its ORM) and `close_caches`
on every request's start or end. Relay configures no Django database (`DATABASES = {}`:
Tortoise holds the data) and only in-process caches, whose `close()` does nothing, so
these receivers only walk connection lists through asgiref's context-local lookups,
four times per request; the handler disconnects them when that is so.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

DUMMY_DATABASE = "django.db.backends.dummy"
NO_OP_CLOSE_CACHES = frozenset({
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
})


def drop_idle_receivers() -> list[str]:
    """Disconnect Django's per-request receivers that have nothing to do here: the
    database ones when no Django database is configured, `close_caches` when every
    cache closes as a no-op. Returns the names of those dropped."""
    dropped = []
    # Django fills an empty DATABASES with its dummy backend once its connections are used.
    if all(database.get("ENGINE", DUMMY_DATABASE) == DUMMY_DATABASE
           for database in settings.DATABASES.values()):
        from django.db import close_old_connections, reset_queries

        signals.request_started.disconnect(reset_queries)
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        dropped += ["reset_queries", "close_old_connections"]
    if all(cache.get("BACKEND") in NO_OP_CLOSE_CACHES for cache in settings.CACHES.values()):
        from django.core.cache import close_caches

        signals.request_finished.disconnect(close_caches)
        dropped.append("close_caches")
    return dropped


class InlineASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        drop_idle_receivers()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = scope.get("relay.body")
        if body is None:
            try:
                body_file = await self.read_body(receive)
            except RequestAborted:
                return
        else:
            body_file = io.BytesIO(body)
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return
        response = await self.run_get_response(request)
        try:
            await self.send_response(response, send)
        finally:
            response.close()
            body_file.close()

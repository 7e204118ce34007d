"""503 while PostgreSQL is unreachable: one answer everywhere, one log line per outage burst.

During an outage every request fails the same way. Django would log each 503 at ERROR
(`django.request`), hundreds of lines a second that bury the one fact worth knowing, so
the answers are marked as logged and this module says it at most every
`SUMMARY_SECONDS`, with how many requests were refused since.
"""

from __future__ import annotations

import logging
import time

from django.http import HttpResponse

log = logging.getLogger("relay.outage")

RETRY_AFTER_SECONDS = "5"
SUMMARY_SECONDS = 30.0


class OutageLog:
    """Counts refusals and logs a warning for the first, then at most every `every` seconds."""

    def __init__(self, every: float = SUMMARY_SECONDS) -> None:
        self.every = every
        self.refused = 0
        self.logged_at: float | None = None

    def note(self, where: str, exc: BaseException | None) -> bool:
        """Counts one refusal; returns True when it was logged."""
        self.refused += 1
        now = time.monotonic()
        if self.logged_at is not None and now - self.logged_at < self.every:
            return False
        cause = f" ({exc.__class__.__name__}: {exc})" if exc is not None else ""
        log.warning("database unavailable: %d request(s) answered 503 since the last report, "
                    "the latest at %s%s; check that PostgreSQL is up and reachable",
                    self.refused, where, cause, extra={"refused": self.refused})
        self.refused = 0
        self.logged_at = now
        return True


outage_log = OutageLog()


def database_unavailable(response: HttpResponse, where: str,
                         exc: BaseException | None = None) -> HttpResponse:
    """`response` (a 503) with Retry-After, counted in the outage log instead of per request."""
    response["Retry-After"] = RETRY_AFTER_SECONDS
    response._has_been_logged = True  # Django's own "already logged" flag
    outage_log.note(where, exc)
    return response

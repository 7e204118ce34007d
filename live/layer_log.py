"""Quieter logs while Redis is down.

channels-redis's pub/sub layer retries a lost Redis connection every second and logs
each failure with a full traceback. This filter keeps the first one of an outage as a
one-line warning and drops the repeats: a new warning comes only after a minute without
connection errors.
"""

from __future__ import annotations

import logging
import time

PUBSUB_LOGGER = "channels_redis.pubsub"
REPEAT_AFTER_SECONDS = 60.0


def _is_connection_error(record: logging.LogRecord) -> bool:
    if not record.exc_info or record.exc_info[1] is None:
        return False
    error = record.exc_info[1]
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectionError", "OSError", "TimeoutError"})


class RedisOutageFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_connection_error(record):
            return True
        now = time.monotonic()
        repeat = now - self._last < REPEAT_AFTER_SECONDS
        self._last = now
        if repeat:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "live: Redis is unreachable (%s); reconnecting every second", (error,)
        record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    logger = logging.getLogger(PUBSUB_LOGGER)
    if not any(isinstance(existing, RedisOutageFilter) for existing in logger.filters):
        logger.addFilter(RedisOutageFilter())

"""Log formatting (`RELAY_LOG_FORMAT=json` gives one JSON object per line) and the
dispatcher's one line per delivery attempt."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

attempt_log = logging.getLogger("relay.attempt")


def _request_summary(request: Any) -> str:
    """Django puts the request object on its own log records; its repr carries the query
    string (which may hold a token), so only the method and path are kept."""
    return f"{getattr(request, 'method', '?')} {getattr(request, 'path', '?')}"


_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds; the date part is formatted once per second."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = vars(record)
        for key in fields.keys() - _STANDARD:
            if key.startswith("_") or key == "scope":
                continue
            value = fields[key]
            if key == "request":
                entry[key] = _request_summary(value)
            else:
                entry[key] = value if isinstance(value, _PLAIN) else str(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_attempt(
    *,
    delivery_id: str,
    event_id: str,
    endpoint_id: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    outcome: str,
    next_attempt_at: datetime | None = None,
) -> None:
    """One line per HTTP try (INFO when it succeeded, WARNING otherwise).

    `outcome` is what became of the delivery: `succeeded`, `retrying`, `failed`, `gone`
    (the endpoint answered 410 and was disabled)... The endpoint URL is not logged (a
    path or query may hold the subscriber's secret); look it up by `endpoint_id`.
    """
    level = logging.INFO if outcome == "succeeded" else logging.WARNING
    if not attempt_log.isEnabledFor(level):
        return
    result = str(status_code) if status_code is not None else (error or "no answer")
    attempt_log.log(
        level, "delivery %s attempt %d to %s: %s in %.0fms -> %s",
        delivery_id, attempt, endpoint_id, result, duration_ms, outcome,
        extra={
            "delivery_id": delivery_id, "event_id": event_id, "endpoint_id": endpoint_id,
            "attempt": attempt, "status_code": status_code, "error": error,
            "duration_ms": round(duration_ms, 2), "outcome": outcome,
            "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
        },
    )

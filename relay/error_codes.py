"""The machine-readable `code` every error answer carries beside its `detail`."""

from __future__ import annotations

ERROR_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
    422: "invalid", 429: "too_many_requests", 431: "headers_too_large", 503: "unavailable",
    508: "loop",
}


def error_code(status: int) -> str:
    return ERROR_CODES.get(status, "error")

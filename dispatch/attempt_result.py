"""How one attempt ended, whatever the endpoint kind (HTTP POST or SMTP)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class AttemptResult:
    started_at: datetime
    duration_ms: float
    request_headers: dict[str, str]
    status_code: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: str = ""
    error: str | None = None
    """None when a response came; else timeout, connect, dns, tls, ssrf_blocked, protocol,
    template (the endpoint's template failed to render), config."""
    error_detail: str | None = None
    permanent: bool = False
    """Retrying cannot help (a template error, a recipient refused for good): the delivery
    fails now instead of running out its schedule."""
    retry_after: float | None = None
    """Seconds the receiver asked to wait, read from its body (Discord's `retry_after`);
    a `Retry-After` header is read by the settle step itself."""

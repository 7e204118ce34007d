"""The admin API's shell: bearer-token auth with scopes, JSON errors, cursor pagination.

Domain routers (hooks.api, dispatch.api) are mounted on `api` in relay/urls.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import ConfigDict
from tortoise.exceptions import ValidationError as FieldValidationError
from tortoise.models import Model
from tortoise.queryset import QuerySet

from kernel.causes import exception_chain
from kernel.database import is_database_unavailable
from kernel.error_codes import error_code
from kernel.ids import ID_PATTERN
from kernel.models import ApiToken, DashboardSession
from kernel.outage import database_unavailable
from kernel.tokens import find_token

M = TypeVar("M", bound=Model)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_LIMIT = 50
MAX_LIMIT = 250


class TokenAuth(HttpBearer):
    """`Authorization: Bearer rly_…`. Viewer tokens may only read."""

    async def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        row = await find_token(token)
        if row is None:
            return None
        if request.method not in SAFE_METHODS and row.scope != "admin":
            raise HttpError(403, "this token has the viewer scope: it may only read")
        return row


SESSION_TOKEN_ID = "relay_token_id"
SESSION_SCOPE = "relay_scope"
SESSION_CSRF = "relay_csrf"
SESSION_ID = "relay_session_id"
"""The `dashboard_session` row of this log-in: the session lives while that row is open."""
CSRF_HEADER = "X-Relay-CSRF"
"""Writes through the dashboard session must carry this header, equal to the session's
`relay_csrf` value (the page has it; another site cannot read it)."""


def read_session(cookie: str | None) -> dict[str, Any]:
    """The dashboard session in a signed cookie (`{}` when missing, tampered with or expired)."""
    if not cookie:
        return {}
    store = SessionStore(session_key=cookie)
    return dict(store.items())


async def session_token(session: dict[str, Any]) -> ApiToken | None:
    """The token the dashboard logged in with, while it is not revoked and the session
    was not logged out."""
    token_id = session.get(SESSION_TOKEN_ID)
    session_id = session.get(SESSION_ID)
    if not (isinstance(token_id, str) and token_id and isinstance(session_id, str)
            and session_id):
        return None
    if not await DashboardSession.exists(id=session_id, token_id=token_id, ended_at=None):
        return None
    return await ApiToken.get_or_none(id=token_id, revoked_at=None)


class SessionAuth(APIKeyCookie):
    """The dashboard's signed-cookie session, for requests without an Authorization header.

    Writes need the `X-Relay-CSRF` header; viewer sessions may only read.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=False)

    async def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        if not key or "authorization" in request.headers:
            return None
        session = read_session(key)
        row = await session_token(session)
        if row is None:
            return None
        if request.method not in SAFE_METHODS:
            expected = session.get(SESSION_CSRF)
            given = request.headers.get(CSRF_HEADER, "")
            if not isinstance(expected, str) or not constant_time_compare(given, expected):
                raise HttpError(403, f"a write through the dashboard session needs the "
                                     f"{CSRF_HEADER} header of its page")
            if row.scope != "admin":
                raise HttpError(403, "this token has the viewer scope: it may only read")
        return row


def require_admin(request: HttpRequest) -> None:
    """For reads that only admins may make (secrets)."""
    token: ApiToken = request.auth
    if token.scope != "admin":
        raise HttpError(403, "reading a secret needs an admin token")


class RelayAPI(NinjaAPI):
    """The API with every operation and field described (kernel/openapi_docs.py)."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        from kernel.openapi_docs import describe

        return describe(super().get_openapi_schema(*args, **kwargs))


api = RelayAPI(
    title="Relay API",
    version="1",
    description="Manage Relay's sources, endpoints, events and deliveries.",
    auth=[TokenAuth(), SessionAuth()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _detail(request: HttpRequest, status: int, detail: str, *, code: str | None = None,
            errors: list[dict[str, str]] | None = None) -> HttpResponse:
    """Every error answer: `{"detail", "code", "errors"?: [{"field", "message"}]}`."""
    body: dict[str, Any] = {"detail": detail, "code": code or error_code(status)}
    if errors:
        body["errors"] = errors
    return api.create_response(request, body, status=status)


class InputSchema(Schema):
    """A request body: a field it does not define is an error, not silently ignored (a
    typo such as `"filtr"` must not leave an endpoint wider than meant)."""

    model_config = ConfigDict(extra="forbid")


_BODY = "body"
_LOCATIONS = frozenset({_BODY, "query", "path", "header", "cookie"})


def _field_name(location: Any) -> str:
    """The field as the client wrote it: django-ninja's location (`body`) and handler
    parameter name (`payload`) left out; `body` for the body as a whole."""
    parts = [str(part) for part in location]
    if parts and parts[0] == _BODY:
        parts = parts[2:]
    elif parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or _BODY


def _message(error: Any) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field (not part of this request)"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _is_missing_body(error: Any) -> bool:
    location = tuple(error.get("loc", ()))
    return error.get("type") == "missing" and len(location) <= 2 and location[:1] == (_BODY,)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if any(error.get("type") == "json_invalid" for error in exc.errors):
        return _detail(request, 400, "the request body is not valid JSON", code="invalid_json")
    if any(_is_missing_body(error) for error in exc.errors):
        return _detail(request, 400, "the request body is empty: send a JSON object",
                       code="empty_body")
    errors = [{"field": _field_name(error.get("loc", ())), "message": _message(error)}
              for error in exc.errors]
    problems = [f"{error['field']}: {error['message']}" for error in errors]
    return _detail(request, 422, "; ".join(problems) or "invalid input", errors=errors)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _detail(request, 401, "a valid API token is required: Authorization: Bearer rly_…")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    detail = str(exc)
    named = _NAMED_PROBLEM.match(detail) if exc.status_code == 422 else None
    errors = [{"field": named["field"], "message": named["message"]}] if named else None
    return _detail(request, exc.status_code, detail, errors=errors)


_NAMED_PROBLEM = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<message>.+)$", re.DOTALL)
"""A 422 message written as `field: problem` (this API's convention)."""


@api.exception_handler(Exception)
def on_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    if is_database_unavailable(exc):
        return database_unavailable(
            _detail(request, 503, "the database is unavailable; retry later"),
            f"{request.method} {request.path}", exc)
    if isinstance(exc, FieldValidationError):
        # A value no column can hold (an id longer than any id, ...): bad input, not a 500.
        return _detail(request, 422, str(exc))
    if _is_unstorable_text(exc):
        return _detail(request, 422, "text must not contain NUL (\\u0000) characters")
    raise exc


_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
"""SQLSTATEs of text PostgreSQL cannot store or compare: NUL in text, \\u0000 in jsonb."""


def _is_unstorable_text(exc: BaseException) -> bool:
    return any(getattr(current, "sqlstate", None) in _UNSTORABLE_TEXT
               for current in exception_chain(exc))


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"c1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("c1:") or not ID_PATTERN.match(text[3:]):
        raise HttpError(400, "cursor is not one this API returned; start again without it")
    return text[3:]


def reject_unknown_params(request: HttpRequest, allowed: frozenset[str]) -> None:
    """A typo in a query parameter must not silently widen a search: 422 naming it."""
    unknown = sorted(set(request.GET.keys()) - allowed)
    if unknown:
        raise HttpError(422, f"unknown query parameter{'s' if len(unknown) > 1 else ''}: "
                             f"{', '.join(unknown)} (known: {', '.join(sorted(allowed))})")


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise HttpError(422, f"limit: must be between 1 and {MAX_LIMIT}")
    return limit


async def paginate(queryset: QuerySet[M], limit: int, cursor: str | None
                   ) -> tuple[list[M], str | None]:
    """Newest first by id (ids sort by creation time); `next_cursor` None on the last page."""
    check_limit(limit)
    if cursor:
        queryset = queryset.filter(id__lt=decode_cursor(cursor))
    rows = await queryset.order_by("-id").limit(limit + 1)
    if len(rows) > limit:
        return rows[:limit], encode_cursor(str(rows[limit - 1].pk))
    return rows, None


async def get_or_404(model: type[M], noun: str, row_id: str, **filters: Any) -> M:
    """The row with this id (and `filters`), or a 404 naming what was not found."""
    row = await model.get_or_none(id=row_id, **filters)
    if row is None:
        raise HttpError(404, f"no {noun} with id {row_id!r}")
    return row


PAGE_BODY_BYTES = 8 * 1024 * 1024
"""A list page stops early once the bodies it holds reach this, whatever `limit` says."""


def within_budget(sizes: Iterable[tuple[str, int | None]], budget: int) -> list[str]:
    """The ids of (id, size) rows, in order, up to the row that would take the sum of sizes
    past `budget` (the first row always)."""
    kept: list[str] = []
    total = 0
    for row_id, size in sizes:
        total += int(size or 0)
        if kept and total > budget:
            break
        kept.append(row_id)
    return kept


async def paginate_sized(queryset: QuerySet[M], limit: int, cursor: str | None,
                         size_field: str = "size",
                         budget: int = PAGE_BODY_BYTES) -> tuple[list[M], str | None]:
    """`paginate` for rows with large bodies: the page ends before the row that would take
    the sum of `size_field` past `budget` (one row at least), and `next_cursor` continues
    from there. Sizes are read first, so bodies past the cut are never fetched."""
    check_limit(limit)
    if cursor:
        queryset = queryset.filter(id__lt=decode_cursor(cursor))
    sizes = await queryset.order_by("-id").limit(limit + 1).values_list("id", size_field)
    kept = within_budget(sizes[:limit], budget)
    rows = await queryset.filter(id__in=kept).order_by("-id") if kept else []
    more = len(sizes) > len(kept)
    return rows, encode_cursor(kept[-1]) if more and kept else None


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()

"""Admin API for endpoints, deliveries, replays and the bulk actions on them."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from ninja.responses import Status
from pydantic import field_validator

from dispatch import actions, cli, delivery_search, queue, states
from dispatch.endpoint_headers import MASK, decrypt_headers, encrypt_headers, masked
from dispatch.models import ENDPOINT_KINDS, Attempt, Delivery, Endpoint
from dispatch.notify.email import BadMailto, recipients
from dispatch.notify.templates import EventView, TemplateProblem, validate_template
from dispatch.outgoing import DROPPED, DROPPED_PREFIXES
from dispatch.own_ingest import is_own_ingest, own_bases
from dispatch.preview import preview_request
from dispatch.ssrf import TargetBlocked, check_url_target, validate_endpoint_url
from dispatch.stats import endpoint_stats
from dispatch.stats_api import StatsOut
from hooks.event_search import EventQuery, SearchError, parse_event_query, parse_time
from hooks.event_search import all_matching_ids as matching_event_ids
from hooks.headers import HOP_BY_HOP
from hooks.models import SLUG_PATTERN, Event
from kernel.api import (
    InputSchema,
    check_limit,
    decode_cursor,
    encode_cursor,
    get_or_404,
    iso,
    paginate,
    reject_unknown_params,
    require_admin,
)
from kernel.crypto import decrypt_secret, encrypt_secret, new_signing_secret
from kernel.filters import FilterError, validate_filter
from kernel.ids import new_id
from kernel.partitions import ids_after

router = Router()

ROTATION_OVERLAP = timedelta(hours=24)
MAX_HEADERS = 50
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,200}$")
RESERVED_PREFIXES = (*DROPPED_PREFIXES, "x-relay-")
PRINTABLE_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")
"""What an endpoint's header value may hold: sent as it is, it must mean the same bytes
to every HTTP stack on the way."""
EVENT_TYPE = re.compile(r"^[^\s*]{1,255}\*?$|^\*$")
SLUG = re.compile(SLUG_PATTERN)


# --- schemas ---------------------------------------------------------------------------------


def check_event_types(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        if not EVENT_TYPE.match(pattern):
            raise ValueError(
                f"{pattern!r} is not an event type or a prefix ending in * (e.g. invoice.*)")
    return patterns


def check_sources(slugs: list[str]) -> list[str]:
    for slug in slugs:
        if not SLUG.match(slug):
            raise ValueError(f"{slug!r} is not a source slug")
    return slugs


class EndpointPatch(InputSchema):
    url: str | None = Field(None, max_length=2048)
    kind: str | None = None
    template: dict[str, Any] | None = None
    description: str | None = Field(None, max_length=2000)
    enabled: bool | None = None
    event_types: list[str] | None = Field(None, max_length=100)
    sources: list[str] | None = Field(None, max_length=100)
    filter: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    timeout_seconds: float | None = Field(None, gt=0, le=60)
    max_in_flight: int | None = Field(None, ge=1, le=1000)
    rate_limit_per_second: float | None = Field(None, gt=0, le=100_000)
    retry_schedule: list[float] | None = Field(None, max_length=20)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if url.strip().lower().startswith("mailto:"):
            try:
                recipients(url.strip())
            except BadMailto as exc:
                raise ValueError(str(exc)) from None
            return url.strip()
        url = validate_endpoint_url(url)
        try:
            check_url_target(url, settings.RELAY_TARGET_ALLOWLIST)
        except TargetBlocked as exc:
            raise ValueError(f"the target address is refused: {exc}") from None
        return url

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str | None) -> str | None:
        if kind is not None and kind not in ENDPOINT_KINDS:
            raise ValueError(f"must be one of {', '.join(ENDPOINT_KINDS)}")
        return kind

    @field_validator("template")
    @classmethod
    def _template(cls, template: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            return validate_template(template)
        except TemplateProblem as exc:
            raise ValueError(str(exc)) from None

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, patterns: list[str] | None) -> list[str] | None:
        return None if patterns is None else check_event_types(patterns)

    @field_validator("sources")
    @classmethod
    def _sources(cls, slugs: list[str] | None) -> list[str] | None:
        return None if slugs is None else check_sources(slugs)

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        if headers is None:
            return None
        if len(headers) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        for name, value in headers.items():
            lower = name.lower()
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if lower in HOP_BY_HOP or lower in DROPPED or lower.startswith(RESERVED_PREFIXES):
                raise ValueError(f"{name} is set by Relay or by the connection and cannot be "
                                 "given here")
            if not PRINTABLE_VALUE.match(value) or len(value) > 8192:
                raise ValueError(f"the value of {name} must be one line of printable ASCII "
                                 "(spaces and tabs allowed), at most 8192 characters")
        return headers

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, schedule: list[float] | None) -> list[float] | None:
        for delay in schedule or ():
            if not math.isfinite(delay) or delay < 0 or delay > 7 * 24 * 3600:
                raise ValueError("delays must be seconds between 0 and 604800")
        return schedule


class EndpointIn(EndpointPatch):
    url: str = Field(..., max_length=2048)
    kind: str = "webhook"
    description: str = Field("", max_length=2000)
    enabled: bool = True
    event_types: list[str] = Field(default_factory=list, max_length=100)
    sources: list[str] = Field(default_factory=list, max_length=100)
    headers: dict[str, str] = Field(default_factory=dict)
    max_in_flight: int = Field(10, ge=1, le=1000)


class EndpointOut(Schema):
    id: str
    url: str
    kind: str
    template: dict[str, Any] | None
    description: str
    enabled: bool
    disabled_reason: str | None
    event_types: list[str]
    sources: list[str]
    filter: dict[str, Any] | None
    headers: dict[str, str]
    timeout_seconds: float | None
    max_in_flight: int
    rate_limit_per_second: float | None
    retry_schedule: list[float] | None
    created_at: str
    updated_at: str


class EndpointWithSecret(EndpointOut):
    secret: str


class EndpointList(Schema):
    data: list[EndpointOut]
    next_cursor: str | None


class SecretOut(Schema):
    secret: str


class RecoverIn(InputSchema):
    since: datetime
    until: datetime | None = None


class CountOut(Schema):
    count: int


class TestOut(Schema):
    event_id: str
    delivery_id: str


class DeliveryOut(Schema):
    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempts_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    completed_at: str | None


class AttemptOut(Schema):
    id: str
    number: int
    started_at: str
    duration_ms: float
    status_code: int | None
    error: str | None
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    response_body: str


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]


class DeliveryList(Schema):
    data: list[DeliveryOut]
    next_cursor: str | None


class ReplayIn(InputSchema):
    endpoint_id: str | None = None


class ReplayOut(Schema):
    count: int
    delivery_ids: list[str]


class Detail(Schema):
    detail: str


class PreviewIn(Schema):
    event_id: str = Field(..., max_length=40)
    template: dict[str, Any] | None = None
    """Render with this template instead of the stored one (the dashboard's editor)."""
    use_template: bool = False
    """True: `template` replaces the stored one even when null (the preset)."""


class PreviewOut(Schema):
    request: dict[str, Any]


# --- shapes ----------------------------------------------------------------------------------


def is_admin(request: HttpRequest) -> bool:
    return getattr(request.auth, "scope", None) == "admin"


def endpoint_out(row: Endpoint, reveal: bool) -> dict[str, Any]:
    """The endpoint's answer; its headers' values only when `reveal` (admin tokens)."""
    headers = decrypt_headers(row.headers_encrypted)
    return {
        "id": row.id,
        "url": row.url,
        "kind": row.kind,
        "template": row.template,
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "event_types": row.event_types or [],
        "sources": row.sources or [],
        "filter": row.filter_rule,
        "headers": headers if reveal else masked(headers),
        "timeout_seconds": row.timeout_seconds,
        "max_in_flight": row.max_in_flight,
        "rate_limit_per_second": row.rate_limit_per_second,
        "retry_schedule": row.retry_schedule,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def delivery_out(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "endpoint_id": row.endpoint_id,
        "status": row.status,
        "attempts_count": row.attempts_count,
        "next_attempt_at": iso(row.next_attempt_at),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "completed_at": iso(row.completed_at),
    }


def attempt_out(row: Attempt, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An attempt; values of the request headers named in `hidden` masked."""
    sent = row.request_headers or {}
    return {
        "id": row.id,
        "number": row.number,
        "started_at": iso(row.started_at),
        "duration_ms": row.duration_ms,
        "status_code": row.status_code,
        "error": row.error,
        "request_headers": {name: MASK if name.lower() in hidden else value
                            for name, value in sent.items()},
        "response_headers": row.response_headers or {},
        "response_body": row.response_body,
    }


async def delivery_summaries(event_id: str) -> list[dict[str, Any]]:
    """The deliveries of one event (for the event detail answer in hooks.api)."""
    queryset = Delivery.filter(event_id=event_id)
    if (low := ids_after("dlv", event_id)) is not None:
        queryset = queryset.filter(id__gte=low)  # days before the event hold none of them
    return [delivery_out(row) for row in await queryset.order_by("id")]


def _check_kind_url(kind: str, url: str) -> None:
    """An email endpoint's url is mailto:, every other kind's http(s)://."""
    mailto = url.lower().startswith("mailto:")
    if kind == "email" and not mailto:
        raise HttpError(422, "url: an email endpoint's url must be mailto:a@x.example[,b@...]")
    if kind != "email" and mailto:
        raise HttpError(422, f"url: a mailto: url needs kind email (this endpoint is {kind})")


def _check_filter(rule: dict[str, Any] | None) -> None:
    if rule is None:
        return
    try:
        validate_filter(rule)
    except FilterError as exc:
        raise HttpError(422, str(exc)) from None


def _refuse_own_ingest(request: HttpRequest, url: str | None) -> None:
    if url is not None and is_own_ingest(url, own_bases(request, settings.RELAY_PUBLIC_URL)):
        raise HttpError(422, "url: points at this Relay's own ingest (/in/…): every event "
                             "would come back as a new event, without end")


async def _endpoint_or_404(endpoint_id: str) -> Endpoint:
    return await get_or_404(Endpoint, "endpoint", endpoint_id, deleted_at=None)


async def _delivery_or_404(delivery_id: str) -> Delivery:
    return await get_or_404(Delivery, "delivery", delivery_id)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- endpoints -------------------------------------------------------------------------------


@router.get("/endpoints", response=EndpointList, tags=["endpoints"])
async def list_endpoints(request: HttpRequest, limit: int = 50, cursor: str | None = None):
    rows, next_cursor = await paginate(Endpoint.filter(deleted_at=None), limit, cursor)
    reveal = is_admin(request)
    return {"data": [endpoint_out(row, reveal) for row in rows], "next_cursor": next_cursor}


@router.post("/endpoints", response={201: EndpointWithSecret, 422: Detail}, tags=["endpoints"])
async def create_endpoint(request: HttpRequest, payload: EndpointIn):
    _check_filter(payload.filter)
    _check_kind_url(payload.kind, payload.url)
    _refuse_own_ingest(request, payload.url)
    secret = new_signing_secret()
    row = await Endpoint.create(
        id=new_id("ep"),
        url=payload.url,
        kind=payload.kind,
        template=payload.template,
        description=payload.description,
        enabled=payload.enabled,
        disabled_reason=None if payload.enabled else _disabled_reason(request),
        secret_encrypted=encrypt_secret(secret),
        event_types=payload.event_types,
        sources=payload.sources,
        filter_rule=payload.filter,
        headers_encrypted=encrypt_headers(payload.headers),
        timeout_seconds=payload.timeout_seconds,
        max_in_flight=payload.max_in_flight,
        rate_limit_per_second=payload.rate_limit_per_second,
        retry_schedule=payload.retry_schedule,
    )
    return Status(201, {**endpoint_out(row, True), "secret": secret})


@router.get("/endpoints/{endpoint_id}", response=EndpointOut, tags=["endpoints"])
async def get_endpoint(request: HttpRequest, endpoint_id: str):
    return endpoint_out(await _endpoint_or_404(endpoint_id), is_admin(request))


_PATCHABLE = {
    "url": "url", "kind": "kind", "template": "template", "description": "description",
    "event_types": "event_types",
    "sources": "sources", "filter": "filter_rule", "headers": "headers_encrypted",
    "timeout_seconds": "timeout_seconds", "max_in_flight": "max_in_flight",
    "rate_limit_per_second": "rate_limit_per_second", "retry_schedule": "retry_schedule",
}
_NULLABLE = {"template", "filter", "timeout_seconds", "rate_limit_per_second", "retry_schedule"}


@router.patch("/endpoints/{endpoint_id}", response={200: EndpointOut, 422: Detail},
              tags=["endpoints"])
async def update_endpoint(request: HttpRequest, endpoint_id: str, payload: EndpointPatch):
    row = await _endpoint_or_404(endpoint_id)
    given = payload.dict(exclude_unset=True)
    for name, value in given.items():
        if value is None and name not in _NULLABLE:
            raise HttpError(422, f"{name}: must not be null")
    if "filter" in given:
        _check_filter(payload.filter)
    if "kind" in given or "url" in given:
        _check_kind_url(given.get("kind") or row.kind, given.get("url") or row.url)
    _refuse_own_ingest(request, given.get("url"))
    changed = {attribute: given[name] for name, attribute in _PATCHABLE.items() if name in given}
    if "headers" in given:
        changed["headers_encrypted"] = encrypt_headers(given["headers"])
    if changed:
        await _save(row, changed)
    if "enabled" in given and given["enabled"] != row.enabled:
        return await _set_enabled(request, endpoint_id, given["enabled"])
    return endpoint_out(row, True)


@router.delete("/endpoints/{endpoint_id}", response={204: None}, tags=["endpoints"])
async def delete_endpoint(request: HttpRequest, endpoint_id: str):
    await _endpoint_or_404(endpoint_id)
    await actions.delete_endpoint(endpoint_id)
    return Status(204, None)


@router.get("/endpoints/{endpoint_id}/secret", response={200: SecretOut, 403: Detail},
            tags=["endpoints"])
async def get_secret(request: HttpRequest, endpoint_id: str):
    require_admin(request)
    row = await _endpoint_or_404(endpoint_id)
    return {"secret": decrypt_secret(row.secret_encrypted)}


@router.post("/endpoints/{endpoint_id}/rotate-secret", response=EndpointWithSecret,
             tags=["endpoints"])
async def rotate_secret(request: HttpRequest, endpoint_id: str):
    row = await _endpoint_or_404(endpoint_id)
    secret = new_signing_secret()
    now = datetime.now(UTC)
    await _save(row, {"previous_secret_encrypted": row.secret_encrypted,
                      "previous_secret_expires_at": now + ROTATION_OVERLAP,
                      "secret_encrypted": encrypt_secret(secret)}, now)
    return {**endpoint_out(row, True), "secret": secret}


async def _save(row: Endpoint, fields: dict[str, Any], now: datetime | None = None) -> None:
    """Write `fields` (attribute → value) with a new `updated_at`, which tells every
    dispatcher to reload the endpoint."""
    for attribute, value in fields.items():
        setattr(row, attribute, value)
    row.updated_at = now or datetime.now(UTC)
    await row.save(update_fields=[*fields, "updated_at"])


def _disabled_reason(request: HttpRequest) -> str:
    """Who disabled by hand: the token's name, and whether through the dashboard session."""
    token = request.auth
    return actions.disabled_reason(token.name, "authorization" not in request.headers)


async def _set_enabled(request: HttpRequest, endpoint_id: str, enabled: bool) -> dict[str, Any]:
    """Enable or disable (its deliveries parked or made due again); the endpoint after,
    as it is then (enabling an endpoint Relay disables again at once shows disabled)."""
    await _endpoint_or_404(endpoint_id)
    await actions.set_endpoint_enabled(endpoint_id, enabled, _disabled_reason(request))
    return endpoint_out(await _endpoint_or_404(endpoint_id), True)


@router.post("/endpoints/{endpoint_id}/enable", response=EndpointOut, tags=["endpoints"])
async def enable_endpoint(request: HttpRequest, endpoint_id: str):
    return await _set_enabled(request, endpoint_id, True)


@router.post("/endpoints/{endpoint_id}/disable", response=EndpointOut, tags=["endpoints"])
async def disable_endpoint(request: HttpRequest, endpoint_id: str):
    return await _set_enabled(request, endpoint_id, False)


@router.post("/endpoints/{endpoint_id}/test", response={202: TestOut}, tags=["endpoints"])
async def test_endpoint(request: HttpRequest, endpoint_id: str):
    await _endpoint_or_404(endpoint_id)
    event_id, delivery_id = await actions.send_test_event(endpoint_id)
    return Status(202, {"event_id": event_id, "delivery_id": delivery_id})


@router.post("/endpoints/{endpoint_id}/recover", response={202: CountOut, 422: Detail},
             tags=["endpoints"])
async def recover_endpoint(request: HttpRequest, endpoint_id: str, payload: RecoverIn):
    await _endpoint_or_404(endpoint_id)
    since = _aware(payload.since)
    until = _aware(payload.until) if payload.until else None
    if until is not None and until <= since:
        raise HttpError(422, "until: must be later than since")
    count = await actions.recover_endpoint(endpoint_id, since, until)
    return Status(202, {"count": count})


@router.post("/endpoints/{endpoint_id}/preview", response={200: PreviewOut, 404: Detail,
                                                           422: Detail}, tags=["endpoints"])
async def preview_endpoint(request: HttpRequest, endpoint_id: str, payload: PreviewIn):
    """Render what a delivery of a stored event to this endpoint would send, without
    sending it."""
    row = await _endpoint_or_404(endpoint_id)
    event = await Event.get_or_none(id=payload.event_id)
    if event is None:
        raise HttpError(404, f"no event with id {payload.event_id!r}")
    template = row.template
    if payload.template is not None or payload.use_template:
        try:
            template = validate_template(payload.template)
        except TemplateProblem as exc:
            raise HttpError(422, f"template: {exc}") from None
    view = EventView(id=event.id, source=event.source_slug, event_type=event.event_type,
                     received_at=event.received_at, headers=event.headers or {},
                     body=bytes(event.body or b""), content_type=event.content_type or "")
    try:
        rendered = preview_request(kind=row.kind, url=row.url,
                                   endpoint_headers=decrypt_headers(row.headers_encrypted),
                                   secret_encrypted=row.secret_encrypted, template=template,
                                   event=view, version=settings.VERSION)
    except (TemplateProblem, BadMailto) as exc:
        raise HttpError(422, str(exc)) from None
    return {"request": rendered}


@router.get("/endpoints/{endpoint_id}/stats", response=StatsOut, tags=["endpoints"])
async def get_endpoint_stats(request: HttpRequest, endpoint_id: str):
    await _endpoint_or_404(endpoint_id)
    return await endpoint_stats(endpoint_id)


# --- deliveries ------------------------------------------------------------------------------


DELIVERY_LIST_PARAMS = frozenset({"endpoint", "event", "status", "since", "until", "limit",
                                  "cursor"})


@router.get("/deliveries", response=DeliveryList, tags=["deliveries"],
            summary="Search the delivery log",
            description=(
                "Deliveries newest first. `status` is one status or a comma-separated list "
                "(`failed,retrying`); `since`/`until` bound when the delivery was created. With "
                "both `endpoint` and `status` a page examines at most "
                f"{delivery_search.CANDIDATES_PER_PAGE} of the endpoint's deliveries: it may "
                "hold fewer than `limit` rows while `next_cursor` continues. An unknown query "
                "parameter is 422."))
async def list_deliveries(request: HttpRequest,
                          endpoint: str | None = Query(None, description="An endpoint id."),
                          event: str | None = Query(None, description="An event id."),
                          status: str | None = Query(
                              None, description="Statuses, comma-separated: "
                                                + ", ".join(states.ALL)),
                          since: str | None = Query(None, description="ISO 8601; created at or after."),
                          until: str | None = Query(None, description="ISO 8601; created before."),
                          limit: int = Query(50, description="1 to 250 rows per page."),
                          cursor: str | None = Query(None, description="`next_cursor` of the page before.")):
    reject_unknown_params(request, DELIVERY_LIST_PARAMS)
    check_limit(limit)
    try:
        query = delivery_search.DeliveryQuery(
            endpoint=endpoint or None, event=event or None,
            statuses=tuple(delivery_search.parse_statuses(status)),
            since=parse_time("since", since), until=parse_time("until", until))
    except (delivery_search.SearchError, SearchError) as exc:
        raise HttpError(422, str(exc)) from None
    if query.since and query.until and query.until <= query.since:
        raise HttpError(422, "until: must be later than since")
    page = await delivery_search.search_deliveries(
        query, limit, decode_cursor(cursor) if cursor else None)
    return {"data": [delivery_out(row) for row in page.rows],
            "next_cursor": encode_cursor(page.next_cursor_id) if page.next_cursor_id else None}


@router.get("/deliveries/{delivery_id}", response=DeliveryDetail, tags=["deliveries"])
async def get_delivery(request: HttpRequest, delivery_id: str):
    row = await _delivery_or_404(delivery_id)
    attempts_query = Attempt.filter(delivery_id=row.id)
    if (low := ids_after("att", row.id)) is not None:
        attempts_query = attempts_query.filter(id__gte=low)
    attempts = await attempts_query.order_by("number", "id")
    hidden: frozenset[str] = frozenset()
    if not is_admin(request):
        # Attempts record endpoint headers masked; older records may not: hide them here.
        endpoint = await Endpoint.get_or_none(id=row.endpoint_id)
        stored = endpoint.headers_encrypted if endpoint is not None else None
        hidden = frozenset(name.lower() for name in decrypt_headers(stored))
    return {**delivery_out(row), "attempts": [attempt_out(a, hidden) for a in attempts]}


@router.post("/deliveries/{delivery_id}/retry", response={202: DeliveryOut, 409: Detail},
             tags=["deliveries"])
async def retry_delivery(request: HttpRequest, delivery_id: str):
    row = await _delivery_or_404(delivery_id)
    if row.status == states.DELIVERING:
        raise HttpError(409, "the delivery is being attempted right now")
    if row.status == states.CANCELLED or not await Endpoint.exists(id=row.endpoint_id,
                                                               deleted_at=None):
        raise HttpError(409, "the delivery's endpoint was deleted")
    if not await actions.retry_delivery(row.id, row.endpoint_id):
        raise HttpError(409, "the delivery is being attempted right now")
    return Status(202, delivery_out(await _delivery_or_404(delivery_id)))


# --- events ----------------------------------------------------------------------------------


@router.post("/events/{event_id}/replay", response={202: ReplayOut, 404: Detail},
             tags=["events"])
async def replay_event(request: HttpRequest, event_id: str, payload: ReplayIn | None = None):
    endpoint_id = payload.endpoint_id if payload else None
    if not await Event.exists(id=event_id):
        raise HttpError(404, f"no event with id {event_id!r}")
    if endpoint_id is not None:
        await _endpoint_or_404(endpoint_id)
    ids = await actions.replay_event(event_id, endpoint_id)
    if ids is None:
        raise HttpError(404, f"no event with id {event_id!r}")
    return Status(202, {"count": len(ids), "delivery_ids": ids})


# --- bulk actions (mounted before the routes with an id, whose patterns would match) --------

bulk_router = Router()

RETRYABLE = ("failed", "retrying")
MAX_REPLAY_EVENTS = 10_000
"""A bulk replay refuses filters that match more events than this: narrow them."""


class BulkRetryIn(InputSchema):
    endpoint_id: str | None = Field(None, description="Only this endpoint's deliveries.")
    statuses: list[Literal["failed", "retrying"]] = Field(
        ..., min_length=1, description="The statuses to retry: failed and/or retrying.")
    since: datetime | None = Field(None, description="Deliveries created at or after.")
    until: datetime | None = Field(None, description="Deliveries created before.")


class BulkReplayIn(InputSchema):
    source: str | None = Field(None, description="A source slug.")
    event_type: str | None = Field(None, description="An exact type or a prefix ending in *.")
    since: str | None = Field(None, description="ISO 8601; received at or after.")
    until: str | None = Field(None, description="ISO 8601; received before.")
    status: str | None = Field(None, description="Events with a delivery in this status.")
    endpoint: str | None = Field(None, description="Events with a delivery to this endpoint.")
    filter: dict[str, Any] | None = Field(None, description="A JSON filter over the body.")
    endpoint_id: str | None = Field(
        None, description="Replay to this endpoint only (else to every endpoint that wants "
                          "each event now).")


class BulkCountOut(Schema):
    count: int = Field(..., description="How many deliveries (retry) or events (replay).")


class ReplayCountOut(BulkCountOut):
    deliveries: int | None = Field(None, description="New deliveries created (not in a dry run).")


def _bulk_time(moment: datetime | None) -> datetime | None:
    return _aware(moment) if moment else None


@bulk_router.post("/deliveries/retry", response={200: BulkCountOut, 202: BulkCountOut,
                                                 404: Detail, 422: Detail},
                  tags=["deliveries"], summary="Retry many deliveries",
                  description="Put every delivery in `statuses` (of one endpoint, created in "
                              "[since, until)) back to pending, 1,000 per statement. "
                              "`?dry_run=true` only counts them (200).")
async def bulk_retry(request: HttpRequest, payload: BulkRetryIn,
                     dry_run: bool = Query(False, description="Count only; change nothing.")):
    if payload.endpoint_id is not None:
        await _endpoint_or_404(payload.endpoint_id)
    since, until = _bulk_time(payload.since), _bulk_time(payload.until)
    if since and until and until <= since:
        raise HttpError(422, "until: must be later than since")
    low, high = delivery_search.id_range(since, until)
    statuses = list(dict.fromkeys(payload.statuses))
    async with queue.pooled() as connection:
        if dry_run:
            count = await queue.count_for_retry(connection, payload.endpoint_id, statuses,
                                                low, high)
            return Status(200, {"count": count})
        count = await queue.retry_in_bulk(connection, payload.endpoint_id, statuses, low, high)
    return Status(202, {"count": count})


@bulk_router.post("/events/replay", response={200: ReplayCountOut, 202: ReplayCountOut,
                                              404: Detail, 422: Detail},
                  tags=["events"], summary="Replay many events",
                  description="Deliver again every event the event-log filters match (at most "
                              f"{MAX_REPLAY_EVENTS}), in batches of {actions.REPLAY_BATCH} "
                              "per transaction. `?dry_run=true` only counts the events (200).")
async def bulk_replay(request: HttpRequest, payload: BulkReplayIn,
                      dry_run: bool = Query(False, description="Count only; change nothing.")):
    given = payload.dict(exclude={"endpoint_id"})
    try:
        query: EventQuery = parse_event_query(given)
    except SearchError as exc:
        raise HttpError(422, str(exc)) from None
    if payload.endpoint_id is not None:
        await _endpoint_or_404(payload.endpoint_id)
    ids = await matching_event_ids(query, MAX_REPLAY_EVENTS)
    if len(ids) > MAX_REPLAY_EVENTS:
        raise HttpError(422, f"more than {MAX_REPLAY_EVENTS} events match: narrow the filters "
                             "(a shorter time range, a source or an event type)")
    if dry_run:
        return Status(200, {"count": len(ids), "deliveries": None})
    created = await actions.replay_events(list(reversed(ids)), payload.endpoint_id)
    return Status(202, {"count": len(ids), "deliveries": created})
# --- relay listen ----------------------------------------------------------------------------


class ListenIn(InputSchema):
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="Resume the cli endpoint of this name; none: a new one")
    forward_to: str = Field(..., max_length=2048,
                            description="Where the CLI forwards deliveries (shown as the URL)")
    sources: list[str] = Field(default_factory=list, max_length=100)
    event_types: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("forward_to")
    @classmethod
    def _forward_to(cls, url: str) -> str:
        return validate_endpoint_url(url)

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, patterns: list[str]) -> list[str]:
        return check_event_types(patterns)

    @field_validator("sources")
    @classmethod
    def _sources(cls, slugs: list[str]) -> list[str]:
        return check_sources(slugs)


class ListenOut(Schema):
    name: str
    created: bool
    secret: str
    websocket_path: str
    endpoint: EndpointOut


@router.post("/cli/listen", response={200: ListenOut, 201: ListenOut, 422: Detail},
             tags=["cli"])
async def cli_listen(request: HttpRequest, payload: ListenIn):
    """Register (or resume, by name) the `cli` endpoint of a `relay listen`. Its deliveries
    are not sent by the dispatcher: the CLI pulls them over `websocket_path`. The target is
    the CLI's own (it connects from the user's machine), so the address guard does not
    apply to it."""
    name = payload.name or cli.new_listener_name()
    row, created = await cli.register(name, payload.forward_to, payload.sources,
                                      payload.event_types)
    return Status(201 if created else 200, {
        "name": name, "created": created, "secret": decrypt_secret(row.secret_encrypted),
        "websocket_path": f"/ws/cli/{row.id}", "endpoint": endpoint_out(row, True),
    })

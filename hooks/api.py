"""Admin API for sources, refused requests and events (list, detail, publish)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from ninja.responses import Status
from pydantic import model_validator
from tortoise.exceptions import IntegrityError

from hooks import samples
from hooks.event_search import (
    CANDIDATES_PER_PAGE,
    DELIVERY_STATUSES,
    QUERY_FIELDS,
    SearchError,
    parse_event_query,
    search_events,
)
from hooks.ingest import query_without_secret, secret_carriers
from hooks.models import SLUG_PATTERN, Event, RejectedRequest, Source
from hooks.rules import ParsedBody, extract
from hooks.sources import forget_source, ingest_source_from_row
from hooks.store import NewEvent, store_event
from hooks.verify import (
    DEFAULT_TOLERANCE_SECONDS,
    VerificationError,
    standard_webhooks_key,
    verify_request,
)
from kernel.api import (
    InputSchema,
    check_limit,
    decode_cursor,
    encode_cursor,
    get_or_404,
    iso,
    paginate,
    reject_unknown_params,
)
from kernel.bus import publish
from kernel.crypto import encrypt_secret
from kernel.ids import new_id

router = Router()

DeliveryStatus = Literal[DELIVERY_STATUSES]  # type: ignore[valid-type]
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
MAX_SOURCE_BODY_BYTES = 100 * 1024 * 1024

DeliverySummaries = Callable[[str], Awaitable[list[dict[str, Any]]]]
_delivery_summaries: list[DeliverySummaries] = []


def show_deliveries_with(reader: DeliverySummaries) -> None:
    """Have `GET /events/{id}` list the event's deliveries as `reader` reads them (the
    wiring, relay/apps.py, registers dispatch's: hooks knows nothing of deliveries)."""
    _delivery_summaries[:] = [reader]


class Rule(InputSchema):
    header: str | None = Field(None, min_length=1, max_length=200)
    json_path: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def exactly_one(self) -> Rule:
        if (self.header is None) == (self.json_path is None):
            raise ValueError("give exactly one of header or json_path")
        return self

    def stored(self) -> dict[str, str]:
        if self.header is not None:
            return {"header": self.header.lower()}
        return {"json_path": self.json_path or ""}


class VerificationIn(InputSchema):
    kind: Literal["none", "token", "hmac", "github", "stripe", "standard_webhooks", "shopify"]
    secret: str | None = Field(None, min_length=1, max_length=1000)
    header: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9-]+$")
    query_param: str | None = Field(None, min_length=1, max_length=200)
    algorithm: Literal["sha1", "sha256", "sha512"] | None = None
    encoding: Literal["hex", "base64"] | None = None
    prefix: str | None = Field(None, max_length=100)
    tolerance_seconds: int | None = Field(None, ge=1, le=7 * 24 * 3600)


class VerificationOut(Schema):
    kind: str
    header: str | None
    query_param: str | None
    algorithm: str | None
    encoding: str | None
    prefix: str | None
    tolerance_seconds: int


class SourceIn(InputSchema):
    slug: str = Field(..., pattern=SLUG_PATTERN)
    name: str = Field("", max_length=200)
    enabled: bool = True
    max_body_bytes: int | None = Field(None, ge=1, le=MAX_SOURCE_BODY_BYTES)
    verification: VerificationIn = VerificationIn(kind="none")  # type: ignore[call-arg]
    dedup: Rule | None = None
    event_type: Rule | None = None


class SourcePatch(InputSchema):
    slug: str | None = Field(None, pattern=SLUG_PATTERN)
    name: str | None = Field(None, max_length=200)
    enabled: bool | None = None
    max_body_bytes: int | None = Field(None, ge=1, le=MAX_SOURCE_BODY_BYTES)
    verification: VerificationIn | None = None
    dedup: Rule | None = None
    event_type: Rule | None = None


class SourceOut(Schema):
    id: str
    slug: str
    name: str
    enabled: bool
    max_body_bytes: int
    verification: VerificationOut
    dedup: dict[str, str] | None
    event_type: dict[str, str] | None
    ingest_url: str
    created_at: str
    updated_at: str


class SourceList(Schema):
    data: list[SourceOut]
    next_cursor: str | None


class RejectedOut(Schema):
    id: str
    received_at: str
    reason: str
    headers: dict[str, str]
    body_preview: str
    size: int


class RejectedList(Schema):
    data: list[RejectedOut]
    next_cursor: str | None


class EventOut(Schema):
    id: str
    source: str | None
    event_type: str | None
    dedup_key: str | None
    received_at: str
    method: str
    query: str
    headers: dict[str, str]
    content_type: str
    size: int
    body: str | None
    body_base64: str


class EventDetail(EventOut):
    deliveries: list[dict[str, Any]]


class EventList(Schema):
    data: list[EventOut]
    next_cursor: str | None


class PublishIn(InputSchema):
    event_type: str = Field(..., min_length=1, max_length=255)
    payload: Any


class Published(Schema):
    id: str


class PublishedDuplicate(Schema):
    id: str
    duplicate: bool


class Detail(Schema):
    detail: str


def _verification_settings(given: VerificationIn, previous: dict[str, Any] | None
                           ) -> dict[str, Any]:
    """The stored (secret-less) verification settings, validated for the kind."""
    values = given.dict(exclude={"secret"})
    kind = given.kind
    if kind == "hmac" and not values.get("header"):
        raise HttpError(422, "verification.header: required for kind hmac")
    if kind == "token" and not values.get("header") and not values.get("query_param"):
        values["header"] = "x-relay-token"
    if values.get("header"):
        values["header"] = values["header"].lower()
    return {key: value for key, value in values.items() if value is not None}


def _check_secret(kind: str, secret: str | None) -> None:
    if kind == "none":
        return
    if not secret:
        raise HttpError(422, f"verification.secret: required for kind {kind}")
    if kind == "standard_webhooks":
        try:
            standard_webhooks_key(secret)
        except ValueError as exc:
            raise HttpError(422, f"verification.secret: {exc}") from None


def ingest_url(request: HttpRequest, slug: str) -> str:
    base = settings.RELAY_PUBLIC_URL or f"{request.scheme}://{request.get_host()}"
    return f"{base}/in/{slug}"


def source_out(request: HttpRequest, row: Source) -> dict[str, Any]:
    stored = row.verification or {"kind": "none"}
    kind = stored.get("kind", "none")
    uses_hmac = kind == "hmac"
    return {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "enabled": row.enabled,
        "max_body_bytes": row.max_body_bytes or settings.RELAY_MAX_BODY_BYTES,
        "verification": {
            "kind": kind,
            "header": stored.get("header"),
            "query_param": stored.get("query_param"),
            "algorithm": stored.get("algorithm", "sha256") if uses_hmac else stored.get("algorithm"),
            "encoding": stored.get("encoding", "hex") if uses_hmac else stored.get("encoding"),
            "prefix": stored.get("prefix"),
            "tolerance_seconds": stored.get("tolerance_seconds", DEFAULT_TOLERANCE_SECONDS),
        },
        "dedup": row.dedup,
        "event_type": row.event_type_rule,
        "ingest_url": ingest_url(request, row.slug),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


async def _source_or_404(source_id: str) -> Source:
    return await get_or_404(Source, "source", source_id)


@router.get("/sources", response=SourceList, tags=["sources"])
async def list_sources(request: HttpRequest, limit: int = 50, cursor: str | None = None):
    rows, next_cursor = await paginate(Source.all(), limit, cursor)
    return {"data": [source_out(request, row) for row in rows], "next_cursor": next_cursor}


@router.post("/sources", response={201: SourceOut, 409: Detail, 422: Detail}, tags=["sources"])
async def create_source(request: HttpRequest, payload: SourceIn):
    verification = _verification_settings(payload.verification, None)
    _check_secret(payload.verification.kind, payload.verification.secret)
    secret = payload.verification.secret if payload.verification.kind != "none" else None
    try:
        row = await Source.create(
            id=new_id("src"),
            slug=payload.slug,
            name=payload.name,
            enabled=payload.enabled,
            max_body_bytes=payload.max_body_bytes,
            verification=verification,
            secret_encrypted=encrypt_secret(secret) if secret else None,
            dedup=payload.dedup.stored() if payload.dedup else None,
            event_type_rule=payload.event_type.stored() if payload.event_type else None,
        )
    except IntegrityError:
        raise HttpError(409, f"a source with slug {payload.slug!r} already exists") from None
    forget_source(row.slug)
    return Status(201, source_out(request, row))


@router.get("/sources/{source_id}", response=SourceOut, tags=["sources"])
async def get_source(request: HttpRequest, source_id: str):
    return source_out(request, await _source_or_404(source_id))


@router.patch("/sources/{source_id}", response={200: SourceOut, 409: Detail, 422: Detail},
              tags=["sources"])
async def update_source(request: HttpRequest, source_id: str, payload: SourcePatch):
    row = await _source_or_404(source_id)
    old_slug = row.slug
    given = payload.dict(exclude_unset=True)
    for field in ("slug", "name", "enabled"):
        if field in given:
            if given[field] is None:
                raise HttpError(422, f"{field}: must not be null")
            setattr(row, field, given[field])
    if "max_body_bytes" in given:
        row.max_body_bytes = payload.max_body_bytes
    if "dedup" in given:
        row.dedup = payload.dedup.stored() if payload.dedup else None
    if "event_type" in given:
        row.event_type_rule = payload.event_type.stored() if payload.event_type else None
    if payload.verification is not None:
        kind_changed = payload.verification.kind != (row.verification or {}).get("kind")
        if payload.verification.secret:
            _check_secret(payload.verification.kind, payload.verification.secret)
            row.secret_encrypted = encrypt_secret(payload.verification.secret)
        elif kind_changed or (payload.verification.kind != "none" and not row.secret_encrypted):
            _check_secret(payload.verification.kind, None)
        if payload.verification.kind == "none":
            row.secret_encrypted = None  # type: ignore[assignment]
        row.verification = _verification_settings(payload.verification, row.verification)
    try:
        await row.save()
    except IntegrityError:
        raise HttpError(409, f"a source with slug {row.slug!r} already exists") from None
    forget_source(old_slug, row.slug)
    return source_out(request, row)


@router.delete("/sources/{source_id}", response={204: None}, tags=["sources"])
async def delete_source(request: HttpRequest, source_id: str):
    row = await _source_or_404(source_id)
    await row.delete()
    forget_source(row.slug)
    return Status(204, None)


def _preview(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@router.get("/sources/{source_id}/rejected", response=RejectedList, tags=["sources"])
async def list_rejected(request: HttpRequest, source_id: str, limit: int = 50,
                        cursor: str | None = None):
    await _source_or_404(source_id)
    since = datetime.now(UTC) - timedelta(days=7)
    rows, next_cursor = await paginate(
        RejectedRequest.filter(source_id=source_id, received_at__gte=since), limit, cursor
    )
    return {
        "data": [
            {"id": row.id, "received_at": iso(row.received_at), "reason": row.reason,
             "headers": row.headers, "body_preview": _preview(bytes(row.body_preview)),
             "size": row.size}
            for row in rows
        ],
        "next_cursor": next_cursor,
    }


def event_out(row: Event) -> dict[str, Any]:
    body = bytes(row.body)
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "id": row.id,
        "source": row.source_slug,
        "event_type": row.event_type,
        "dedup_key": row.dedup_key,
        "received_at": iso(row.received_at),
        "method": row.method,
        "query": row.query,
        "headers": row.headers,
        "content_type": row.content_type,
        "size": row.size,
        "body": text,
        "body_base64": base64.b64encode(body).decode(),
    }


EVENT_LIST_PARAMS = frozenset({*QUERY_FIELDS, "limit", "cursor"})


@router.get("/events", response=EventList, tags=["events"],
            summary="Search the event log",
            description=(
                "Events newest first. `event_type` is an exact name or a prefix ending in `*`; "
                "`status` keeps events with at least one delivery in that status; `endpoint` "
                "keeps events with a delivery to that endpoint; `filter` is a URL-encoded JSON "
                "filter over the body (the endpoint filter language). With a prefix, status, "
                f"endpoint or filter a page examines at most {CANDIDATES_PER_PAGE} candidate "
                "events: it may hold fewer than `limit` rows (even none) while `next_cursor` "
                "continues the search. An unknown query parameter is 422."))
async def list_events(request: HttpRequest,
                      source: str | None = Query(None, description="A source slug."),
                      event_type: str | None = Query(
                          None, description="An exact event type or a prefix ending in `*`."),
                      since: str | None = Query(None, description="ISO 8601; received at or after."),
                      until: str | None = Query(None, description="ISO 8601; received before."),
                      status: DeliveryStatus | None = Query(
                          None, description="Events with at least one delivery in this status."),
                      endpoint: str | None = Query(
                          None, description="Events with a delivery to this endpoint id."),
                      filter: str | None = Query(
                          None, description="A JSON filter over the body, URL-encoded."),
                      limit: int = Query(50, description="1 to 250 rows per page."),
                      cursor: str | None = Query(None, description="`next_cursor` of the page before.")):
    reject_unknown_params(request, EVENT_LIST_PARAMS)
    check_limit(limit)
    try:
        query = parse_event_query({
            "source": source, "event_type": event_type, "since": since, "until": until,
            "status": status, "endpoint": endpoint, "filter": filter})
    except SearchError as exc:
        raise HttpError(422, str(exc)) from None
    page = await search_events(query, limit, decode_cursor(cursor) if cursor else None)
    return {"data": [event_out(row) for row in page.rows],
            "next_cursor": encode_cursor(page.next_cursor_id) if page.next_cursor_id else None}


@router.get("/events/{event_id}", response=EventDetail, tags=["events"])
async def get_event(request: HttpRequest, event_id: str):
    row = await Event.get_or_none(id=event_id)
    if row is None:
        raise HttpError(404, f"no event with id {event_id!r}")
    deliveries = await _delivery_summaries[0](row.id) if _delivery_summaries else []
    return {**event_out(row), "deliveries": deliveries}


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@router.post("/events", response={202: Published, 200: PublishedDuplicate, 409: Detail, 422: Detail},
             tags=["events"])
async def publish_event(request: HttpRequest, payload: PublishIn):
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise HttpError(422, "Idempotency-Key: 1 to 255 printable ASCII characters")
    body = json.dumps(payload.payload, separators=(",", ":")).encode()
    stored = await store_event(
        NewEvent(
            source_id=None, source_slug=None, event_type=payload.event_type, dedup_key=key,
            method="POST", query="", headers={"content-type": "application/json"},
            content_type="application/json", body=body,
        ),
        IDEMPOTENCY_WINDOW_SECONDS, compare_request=key is not None,
    )
    if stored.duplicate and not stored.same_request:
        raise HttpError(409, f"Idempotency-Key {key!r} was already used for another event "
                             f"({stored.id}) with a different event_type or payload; "
                             "use a new key for a new event")
    if stored.duplicate:
        return Status(200, {"id": stored.id, "duplicate": True})
    publish({
        "type": "event.received",
        "event": {"id": stored.id, "source": None, "event_type": payload.event_type,
                  "received_at": iso(stored.received_at), "size": len(body)},
    })
    return Status(202, {"id": stored.id})



# --- samples (relay trigger) -----------------------------------------------------------------


class FixtureOut(Schema):
    name: str = Field(..., description="What `trigger` takes, e.g. github.push")
    provider: str
    event_type: str
    description: str


class FixtureList(Schema):
    data: list[FixtureOut]


class TriggerIn(InputSchema):
    fixture: str = Field(..., min_length=1, max_length=200,
                         description="A name from GET /api/v1/fixtures")


@router.get("/fixtures", response=FixtureList, tags=["sources"])
async def list_fixtures(request: HttpRequest):
    """The sample webhooks `POST /sources/{id}/trigger` can store."""
    return {"data": [
        {"name": f.name, "provider": f.provider, "event_type": f.event_type,
         "description": f.description}
        for f in samples.fixtures().values()
    ]}


@router.post("/sources/{source_id}/trigger",
             response={202: Published, 404: Detail, 409: Detail, 422: Detail}, tags=["sources"])
async def trigger(request: HttpRequest, source_id: str, payload: TriggerIn):
    """Store a sample webhook as if the provider had sent it to this source: the
    provider's headers and body, signed for the source's verification kind with its
    secret, and checked by that verification before it is stored."""
    row = await _source_or_404(source_id)
    fixture = samples.fixtures().get(payload.fixture)
    if fixture is None:
        raise HttpError(422, f"fixture: no fixture {payload.fixture!r}; one of "
                             f"{', '.join(samples.fixtures())}")
    if not row.enabled:
        raise HttpError(409, f"the source {row.slug!r} is disabled")
    source = ingest_source_from_row(row)
    now = time.time()
    sample = samples.sample_request(fixture, source.verification, source.secret, now)
    try:
        verify_request(source.verification, source.secret, sample.headers, sample.query,
                       sample.body, now)
    except VerificationError as refusal:
        raise HttpError(422, f"cannot make a request this source accepts: {refusal}") from None
    carriers = secret_carriers(source)
    headers = {name: value for name, value in sample.headers.items() if name not in carriers}
    query = query_without_secret(urlencode(sample.query), source)
    parsed = ParsedBody(sample.body)
    stored = await store_event(
        NewEvent(source_id=source.id, source_slug=source.slug,
                 event_type=extract(source.event_type, headers, parsed),
                 dedup_key=extract(source.dedup, headers, parsed), method="POST", query=query,
                 headers=headers, content_type=headers.get("content-type", ""),
                 body=sample.body),
        settings.RELAY_DEDUP_WINDOW,
    )
    if not stored.duplicate:
        publish({"type": "event.received", "event": {
            "id": stored.id, "source": source.slug, "event_type": fixture.event_type,
            "received_at": iso(stored.received_at), "size": len(sample.body)}})
    return Status(202, {"id": stored.id})

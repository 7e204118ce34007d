"""`POST /in/<slug>`: verify, store durably, answer. The one view on Relay's hot path."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from hooks.headers import stored_headers
from hooks.rules import ParsedBody, extract
from hooks.sources import IngestSource, get_ingest_source
from hooks.store import NewEvent, rejection_log, store_event
from hooks.verify import DEFAULT_TOKEN_HEADER, VerificationError, verify_request
from relay.bus import publish
from relay.database import is_database_unavailable
from relay.hops import HOPS_HEADER, MAX_HOPS, hops_of
from relay.outage import database_unavailable

log = logging.getLogger("relay.ingest")
_HOPS_NAME = HOPS_HEADER.encode()


def _json(status: int, payload: dict) -> HttpResponse:
    """What JsonResponse would send, byte for byte, without its encoder class per call."""
    return HttpResponse(json.dumps(payload).encode(), status=status,
                        content_type="application/json")


def _unavailable(slug: str, exc: BaseException) -> HttpResponse:
    return database_unavailable(
        _json(503, {"detail": "the database is unavailable; retry later"}), f"/in/{slug}", exc)


def secret_carriers(source: IngestSource) -> frozenset[str]:
    """Headers that carry a token source's shared secret: never stored or forwarded."""
    if source.verification.kind != "token" or source.verification.query_param:
        return frozenset()
    return frozenset({(source.verification.header or DEFAULT_TOKEN_HEADER).lower()})


def query_without_secret(raw_query: str, source: IngestSource) -> str:
    param = source.verification.query_param if source.verification.kind == "token" else None
    if not param:
        return raw_query
    return "&".join(
        part for part in raw_query.split("&") if unquote_plus(part.split("=", 1)[0]) != param
    )


async def _refuse(source: IngestSource, reason: str, headers: dict[str, str],
                  body: bytes) -> HttpResponse:
    publish({"type": "ingest.rejected", "source": source.slug, "reason": reason})
    try:
        await rejection_log.record(source.id, reason, headers, body)
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        log.warning("could not keep refused request for %s: database unavailable", source.slug)
    return _json(401, {"detail": f"verification failed: {reason}"})


@csrf_exempt
async def ingest(request: HttpRequest, slug: str) -> HttpResponse:
    if request.method != "POST":
        response = _json(405, {"detail": "use POST to deliver a webhook"})
        response["Allow"] = "POST"
        return response
    hops = _hops(request)
    if hops > MAX_HOPS:
        return _json(508, {"detail": f"this request has passed through {hops} Relay hops "
                                     f"({HOPS_HEADER}); more than {MAX_HOPS} is a loop"})
    try:
        source = await get_ingest_source(slug)
    except Exception as exc:
        if is_database_unavailable(exc):
            return _unavailable(slug, exc)
        raise
    if source is None or not source.enabled:
        return _json(404, {"detail": f"no enabled source with slug {slug!r}"})

    body = request.body
    raw_query = request.META.get("QUERY_STRING", "")
    headers = stored_headers(request.scope["headers"], drop=secret_carriers(source))
    try:
        verify_request(
            source.verification, source.secret, _all_headers(request, headers, source),
            dict(parse_qsl(raw_query, keep_blank_values=True)) if raw_query else {}, body,
            time.time(),
        )
    except VerificationError as refusal:
        return await _refuse(source, str(refusal), headers, body)

    parsed = ParsedBody(body)
    event = NewEvent(
        source_id=source.id,
        source_slug=source.slug,
        event_type=extract(source.event_type, headers, parsed),
        dedup_key=extract(source.dedup, headers, parsed),
        method=request.method,
        query=query_without_secret(raw_query, source),
        headers=headers,
        content_type=headers.get("content-type", ""),
        body=body,
    )
    try:
        stored = await store_event(event, settings.RELAY_DEDUP_WINDOW)
    except Exception as exc:
        if is_database_unavailable(exc):
            return _unavailable(slug, exc)
        raise
    if stored.duplicate:
        return _json(200, {"id": stored.id, "duplicate": True})
    publish({
        "type": "event.received",
        "event": {
            "id": stored.id, "source": source.slug, "event_type": event.event_type,
            "received_at": stored.received_at.isoformat(), "size": len(body),
        },
    })
    return _json(202, {"id": stored.id})


def _hops(request: HttpRequest) -> int:
    for name, value in request.scope["headers"]:
        if name.lower() == _HOPS_NAME:
            return hops_of({HOPS_HEADER: value.decode("latin-1")})
    return 0


def _all_headers(request: HttpRequest, stored: dict[str, str],
                 source: IngestSource) -> dict[str, str]:
    """Verification sees every header, the secret-carrying one included."""
    carriers = secret_carriers(source)
    if not carriers:
        return stored
    return stored_headers(request.scope["headers"])

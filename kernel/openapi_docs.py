"""Descriptions and enums for the OpenAPI schema, in one glossary.

A field means the same thing in every schema that has it (`status` of a delivery, `id`,
`created_at`), so its description is written once here, keyed by name, with a
`Schema.field` key where one schema means something else. Operations get theirs by
operation id. `describe` fills what a route or schema left blank; the schema test checks
that nothing is left blank.
"""

from __future__ import annotations

from typing import Any

DELIVERY_STATUSES = ["pending", "delivering", "retrying", "succeeded", "failed", "cancelled"]
"""dispatch/states.py's `ALL` (the kernel imports no app; tests/dispatch/test_states.py
checks that the two agree)."""
VERIFICATION_KINDS = ["none", "token", "hmac", "github", "stripe", "standard_webhooks", "shopify"]
ENDPOINT_KINDS = ["webhook", "slack", "discord", "teams", "email", "cli"]
CIRCUIT_STATES = ["closed", "open", "half_open"]
ATTEMPT_ERRORS = ["timeout", "connect", "dns", "tls", "ssrf_blocked", "protocol"]

ENUMS: dict[str, list[str]] = {
    "DeliveryOut.status": DELIVERY_STATUSES,
    "DeliveryDetail.status": DELIVERY_STATUSES,
    "VerificationOut.kind": VERIFICATION_KINDS,
    "EndpointOut.kind": ENDPOINT_KINDS,
    "EndpointWithSecret.kind": ENDPOINT_KINDS,
    "StatsOut.circuit": CIRCUIT_STATES,
    "AttemptOut.error": ATTEMPT_ERRORS,
}

OPERATIONS: dict[str, str] = {
    "hooks_api_list_sources": "Every source, newest first; secrets are never listed.",
    "hooks_api_create_source": "Create a source; its ingest URL is in the answer. A duplicate "
                               "slug is 409.",
    "hooks_api_get_source": "One source, without its secret.",
    "hooks_api_update_source": "Change some fields of a source; a new secret replaces the old "
                               "one, no secret keeps it.",
    "hooks_api_delete_source": "Delete a source: its ingest URL answers 404 from then on; "
                               "stored events stay.",
    "hooks_api_list_rejected": "The requests this source refused in the last 7 days, with the "
                               "reason (why a provider's webhooks fail verification).",
    "hooks_api_publish_event": "Publish an event without a source; the same Idempotency-Key "
                               "within 24 h answers the first event's id.",
    "hooks_api_get_event": "One event with its body and the summaries of its deliveries.",
    "dispatch_api_list_endpoints": "Every endpoint that is not deleted, newest first.",
    "dispatch_api_create_endpoint": "Create an endpoint; the signing secret is in this answer.",
    "dispatch_api_get_endpoint": "One endpoint (no secret).",
    "dispatch_api_update_endpoint": "Change some fields of an endpoint; dispatchers pick the "
                                    "change up at once.",
    "dispatch_api_delete_endpoint": "Delete an endpoint: its unfinished deliveries are "
                                    "cancelled; its history stays.",
    "dispatch_api_get_secret": "The endpoint's signing secret (admin tokens only).",
    "dispatch_api_rotate_secret": "A new signing secret; the old one keeps signing too for "
                                  "24 hours.",
    "dispatch_api_enable_endpoint": "Enable: its waiting deliveries become due. The answer is "
                                    "the endpoint as it is afterwards.",
    "dispatch_api_disable_endpoint": "Disable: its deliveries wait (none is lost); the reason "
                                     "names the token.",
    "dispatch_api_test_endpoint": "Send a relay.test event to this endpoint only.",
    "dispatch_api_recover_endpoint": "Put every failed delivery of the endpoint created since a "
                                     "time back to pending.",
    "dispatch_api_get_endpoint_stats": "Success rate, latency percentiles, in flight, pending "
                                       "and circuit state over the last 24 h.",
    "dispatch_api_get_delivery": "One delivery with every attempt.",
    "dispatch_api_retry_delivery": "Try a delivery again now (a fresh retry schedule; its "
                                   "attempts are kept).",
    "dispatch_api_replay_event": "New deliveries of a stored event: to one endpoint, or to "
                                 "every endpoint that wants it now.",
}

FIELDS: dict[str, str] = {
    "id": "The object's id: a type prefix and 26 characters that sort by creation time.",
    "slug": "URL-safe name; the source's ingest URL is /in/<slug>.",
    "name": "A name for people.",
    "enabled": "Whether it is in use.",
    "max_body_bytes": "The largest body accepted, in bytes (413 above it).",
    "verification": "How requests prove they come from the provider.",
    "kind": "The kind (see the enum).",
    "secret": "The secret (write only for sources; endpoints: in the create answer).",
    "header": "A header name (lower case).",
    "query_param": "A query parameter name.",
    "algorithm": "HMAC digest: sha1, sha256 or sha512.",
    "encoding": "Signature encoding: hex or base64.",
    "prefix": "Text before the signature in the header (sha256=).",
    "tolerance_seconds": "How far a signed timestamp may be from now, in seconds.",
    "json_path": "A dotted path into the JSON body (data.object.id).",
    "dedup": "Where the dedup key comes from; null = the kind's default.",
    "event_type": "The event type (or, on a source, where it comes from; null = the default).",
    "ingest_url": "The absolute URL a provider posts to.",
    "created_at": "When it was created (ISO 8601, UTC).",
    "updated_at": "When it last changed (ISO 8601, UTC).",
    "data": "The rows of this page.",
    "next_cursor": "Pass as `cursor` for the next page; null on the last page.",
    "received_at": "When Relay received it (ISO 8601, UTC).",
    "reason": "Why it was refused.",
    "headers": "Header names (lower case) to values.",
    "body_preview": "The first 8 KiB of the body, as text.",
    "size": "Body size in bytes.",
    "source": "The source slug; null when published through the API.",
    "dedup_key": "The key duplicates are recognised by; null when none.",
    "method": "HTTP method of the request.",
    "query": "The raw query string.",
    "content_type": "The Content-Type header.",
    "body": "The body as text when it is valid UTF-8, else null.",
    "body_base64": "The exact body bytes, base64.",
    "deliveries": "The event's deliveries (summaries).",
    "payload": "Any JSON value: the body of the event.",
    "duplicate": "True: an event with this key exists already; nothing was created.",
    "detail": "What went wrong, naming the field.",
    "url": "Where deliveries are sent (http or https).",
    "description": "Free text for people.",
    "disabled_reason": "Why it is disabled (who disabled it, or what Relay saw); null when "
                       "enabled.",
    "event_types": "Event types it wants: exact names or prefixes ending in *; empty = all.",
    "sources": "Source slugs it wants; empty = all.",
    "filter": "A JSON filter over the event body; null = every event.",
    "timeout_seconds": "Seconds to wait for an answer; null = the server default.",
    "max_in_flight": "At most this many deliveries to it at once.",
    "rate_limit_per_second": "At most this many attempts per second; null = no limit.",
    "retry_schedule": "Delays in seconds between attempts; null = the server default.",
    "template": "Message templates of a notification kind; null = the kind's preset.",
    "since": "Start of the time range (inclusive, ISO 8601).",
    "until": "End of the time range (exclusive, ISO 8601).",
    "count": "How many.",
    "event_id": "The event's id.",
    "delivery_id": "The delivery's id.",
    "delivery_ids": "The ids of the new deliveries.",
    "endpoint_id": "The endpoint's id.",
    "source_id": "The source's id.",
    "success_rate": "Share of attempts that succeeded, 0 to 1; null without attempts.",
    "attempts": "Attempts in the window (stats) or every attempt (a delivery).",
    "failures": "Failed attempts in the window.",
    "p50_ms": "Median attempt duration, ms.",
    "p95_ms": "95th percentile attempt duration, ms.",
    "p99_ms": "99th percentile attempt duration, ms.",
    "in_flight": "Attempts under way now.",
    "pending": "Deliveries waiting to be attempted.",
    "circuit": "Circuit breaker state: closed (normal), open (waiting out failures), "
               "half_open (one probe).",
    "status": "Delivery status (see the enum).",
    "attempts_count": "Attempts made so far.",
    "next_attempt_at": "When the next attempt is due; null when none is.",
    "last_status_code": "HTTP status of the last answer; null when none came.",
    "last_error": "Error of the last attempt; null when an answer came.",
    "completed_at": "When it reached a final status; null until then.",
    "number": "Attempt number, from 1.",
    "started_at": "When the attempt started.",
    "duration_ms": "How long the attempt took, ms.",
    "status_code": "HTTP status of the answer; null when none came.",
    "error": "Why no answer came (see the enum); null when one came.",
    "request_headers": "Headers sent (secret values masked for viewers).",
    "response_headers": "Headers of the answer.",
    "response_body": "The first 8 KiB of the answer's body.",
    "statuses": "Delivery statuses.",
}


def _fill(target: dict[str, Any], description: str | None) -> None:
    if description and not target.get("description"):
        target["description"] = description


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Fill blank descriptions and add enums in an OpenAPI schema (in place)."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            _fill(operation, OPERATIONS.get(operation.get("operationId", "")))
            _fill(operation, operation.get("summary"))
            for parameter in operation.get("parameters", []):
                name = parameter.get("name", "")
                _fill(parameter, FIELDS.get(name))
                if name.endswith("_id"):
                    _fill(parameter, f"The {name[:-3].replace('_', ' ')}'s id.")
                if parameter.get("name") == "limit":
                    _fill(parameter, "Rows per page, 1 to 250 (default 50).")
                if parameter.get("name") == "cursor":
                    _fill(parameter, "The `next_cursor` of the page before.")
                if parameter.get("name") == "dry_run":
                    _fill(parameter, "Only count; change nothing.")
                _fill(parameter.get("schema", {}), parameter.get("description"))
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        for field, spec in component.get("properties", {}).items():
            _fill(spec, FIELDS.get(f"{name}.{field}") or FIELDS.get(field))
            _fill(spec, spec.get("title") or field.replace("_", " "))  # stopgap: not in the glossary yet
            values = ENUMS.get(f"{name}.{field}")
            if values:
                _set_enum(spec, values)
    return schema


def _set_enum(spec: dict[str, Any], values: list[str]) -> None:
    """The enum on the string part of the field (keeping null where the field allows it)."""
    if spec.get("type") == "string":
        spec["enum"] = values
        return
    for option in spec.get("anyOf", []):
        if option.get("type") == "string":
            option["enum"] = values

"""Sources (where webhooks come from), Events (what arrived), refused requests."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
"""A source's slug, the `<slug>` of `/in/<slug>`; also how API filters name sources."""


class Source(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    slug = fields.CharField(max_length=100, unique=True)
    name = fields.CharField(max_length=200, default="")
    enabled = fields.BooleanField(default=True)
    max_body_bytes = fields.IntField(null=True)
    verification: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    """The verification settings without the secret: kind, header, algorithm, ..."""
    secret_encrypted = fields.TextField(null=True)
    dedup: fields.JSONField[dict[str, str] | None] = fields.JSONField(null=True)
    event_type_rule: fields.JSONField[dict[str, str] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "source"


class Event(Model):
    """One received webhook, or one published through the API. Never modified after insert.
    Until the dispatcher has made its deliveries it is also listed in `event_unrouted`
    (migration 0012)."""

    id = fields.CharField(max_length=40, primary_key=True)
    source_id = fields.CharField(max_length=40, null=True)
    source_slug = fields.CharField(max_length=100, null=True)
    event_type = fields.CharField(max_length=255, null=True)
    dedup_key = fields.CharField(max_length=255, null=True)
    received_at = fields.DatetimeField()
    method = fields.CharField(max_length=10, default="POST")
    query = fields.TextField(default="")
    headers: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    content_type = fields.CharField(max_length=255, default="")
    size = fields.IntField(default=0)
    body = fields.BinaryField()

    class Meta:
        table = "event"
        indexes = [
            Index(fields=("source_id", "dedup_key", "received_at"), name="event_dedup_idx"),
            Index(fields=("source_slug", "id"), name="event_source_idx"),
            Index(fields=("event_type", "id"), name="event_type_idx"),
            Index(fields=("received_at",), name="event_received_idx"),
        ]


class RejectedRequest(Model):
    """A refused ingest request, kept 7 days so an admin can see why a provider fails."""

    id = fields.CharField(max_length=40, primary_key=True)
    source_id = fields.CharField(max_length=40)
    received_at = fields.DatetimeField()
    reason = fields.TextField()
    headers: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    body_preview = fields.BinaryField()
    size = fields.IntField(default=0)

    class Meta:
        table = "rejected_request"
        indexes = [Index(fields=("source_id", "received_at"), name="rejected_source_idx")]

"""Endpoints (subscribers), Deliveries (one event to one endpoint), Attempts (one HTTP try)."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from dispatch import states

ENDPOINT_KINDS = ("webhook", "slack", "discord", "teams", "email", "cli")


class Endpoint(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    url = fields.TextField()
    kind = fields.CharField(max_length=16, default="webhook", db_default="webhook")
    """How deliveries are sent: `webhook` forwards the request; the others notify (see
    ENDPOINT_KINDS); `cli` deliveries are pulled by a connected `relay listen`."""
    template: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    """Message or body templates: {"title", "text", "fields", "body"}; null = the preset."""
    description = fields.TextField(default="")
    enabled = fields.BooleanField(default=True)
    disabled_reason = fields.TextField(null=True)
    secret_encrypted = fields.TextField()
    previous_secret_encrypted = fields.TextField(null=True)
    previous_secret_expires_at = fields.DatetimeField(null=True)
    event_types: fields.JSONField[list[str]] = fields.JSONField(default=list)
    sources: fields.JSONField[list[str]] = fields.JSONField(default=list)
    filter_rule: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True, source_field="filter")
    headers_encrypted = fields.TextField(null=True)
    """The endpoint's extra headers (`dispatch.endpoint_headers`): secrets, so encrypted."""
    timeout_seconds = fields.FloatField(null=True)
    max_in_flight = fields.IntField(default=10)
    rate_limit_per_second = fields.FloatField(null=True)
    retry_schedule: fields.JSONField[list[float] | None] = fields.JSONField(null=True)
    circuit_opened_at = fields.DatetimeField(null=True)
    consecutive_failures = fields.IntField(default=0)
    first_failure_at = fields.DatetimeField(null=True)
    last_success_at = fields.DatetimeField(null=True)
    circuit_probe_at = fields.DatetimeField(null=True)
    """When a dispatcher took the one probe of a half-open circuit (others wait for it)."""
    circuit_parked = fields.BooleanField(default=False, db_default=False)
    """The circuit has been open since the endpoint's waiting deliveries were parked: once
    it is closed, they are made due again (dispatch.queue.unpark_closed) and this is
    cleared. Durable, so a dispatcher that dies half way cannot leave them parked."""
    deleted_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "endpoint"


class Delivery(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    event_id = fields.CharField(max_length=40)
    endpoint_id = fields.CharField(max_length=40)
    status = fields.CharField(max_length=12, default=states.PENDING)
    attempts_count = fields.IntField(default=0)
    retry_base = fields.IntField(default=0, db_default=0)
    """`attempts_count` when the delivery was last retried or recovered by hand: the retry
    schedule starts over from there, while attempt numbers keep counting."""
    next_attempt_at = fields.DatetimeField(null=True)
    lease_owner = fields.CharField(max_length=64, null=True)
    lease_expires_at = fields.DatetimeField(null=True)
    last_status_code = fields.IntField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "delivery"
        indexes = [
            Index(fields=("event_id",), name="delivery_event_idx"),
            Index(fields=("endpoint_id", "id"), name="delivery_endpoint_idx"),
            Index(fields=("status", "id"), name="delivery_status_idx"),
        ]


class Attempt(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    delivery_id = fields.CharField(max_length=40)
    endpoint_id = fields.CharField(max_length=40)
    number = fields.IntField()
    started_at = fields.DatetimeField()
    duration_ms = fields.FloatField()
    status_code = fields.IntField(null=True)
    error = fields.CharField(max_length=20, null=True)
    error_detail = fields.TextField(null=True)
    request_headers: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    response_headers: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    response_body = fields.TextField(default="")

    class Meta:
        table = "attempt"
        indexes = [
            Index(fields=("delivery_id", "number"), name="attempt_delivery_idx"),
        ]
        """No index by endpoint and time: statistics and alerts read the rollups, and an
        index no statement reads would cost every settle batch its upkeep."""


class Alert(Model):
    """A rule that notifies endpoints when Relay's own health needs a human."""

    id = fields.CharField(max_length=40, primary_key=True)
    name = fields.CharField(max_length=200)
    enabled = fields.BooleanField(default=True)
    conditions: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    notify: fields.JSONField[list[str]] = fields.JSONField(default=list)
    """Endpoint ids the alert events are delivered to."""
    cooldown_seconds = fields.IntField(default=900)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alert"


class AlertState(Model):
    """Whether one alert condition is firing for one subject (an endpoint or a source).

    The primary key is `alert_id:condition index:subject`: every dispatcher evaluating the
    same rule locks the same row, so a firing is decided and recorded once."""

    key = fields.CharField(max_length=200, primary_key=True)
    alert_id = fields.CharField(max_length=40)
    condition = fields.IntField()
    subject = fields.CharField(max_length=120)
    firing = fields.BooleanField(default=False)
    last_fired_at = fields.DatetimeField(null=True)
    last_event_id = fields.CharField(max_length=40, null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alert_state"
        indexes = [Index(fields=("alert_id", "firing"), name="alert_state_alert_idx")]

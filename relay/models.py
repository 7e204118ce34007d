"""Infrastructure models: API tokens and dashboard sessions. Domain models live in hooks/
and dispatch/."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

SCOPES = ("admin", "viewer")


class ApiToken(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    name = fields.CharField(max_length=200)
    scope = fields.CharField(max_length=10)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class DashboardSession(Model):
    """One dashboard log-in. The browser's signed cookie names it; log-out ends it here,
    so a copy of the cookie stops working at once, not only when it expires."""

    id = fields.CharField(max_length=64, primary_key=True)
    token_id = fields.CharField(max_length=40)
    created_at = fields.DatetimeField(auto_now_add=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "dashboard_session"

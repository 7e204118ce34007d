"""Admin API for alert rules (`/api/v1/alerts`) and what they fired."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.errors import HttpError
from ninja.responses import Status
from pydantic import field_validator

from dispatch.alert_rules import BadCondition, normalize_conditions
from dispatch.models import Alert, AlertState, Endpoint
from kernel.api import get_or_404, iso, paginate
from kernel.ids import new_id

router = Router()

MAX_NOTIFY = 20


class AlertPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    enabled: bool | None = None
    conditions: list[Any] | None = None
    notify: list[str] | None = Field(None, max_length=MAX_NOTIFY)
    cooldown_seconds: int | None = Field(None, ge=0, le=7 * 24 * 3600)

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, conditions: list[Any] | None) -> list[dict[str, Any]] | None:
        if conditions is None:
            return None
        try:
            return normalize_conditions(conditions)
        except BadCondition as exc:
            raise ValueError(str(exc).removeprefix("conditions").lstrip(": ")) from None


class AlertIn(AlertPatch):
    name: str = Field(..., min_length=1, max_length=200)
    enabled: bool = True
    conditions: list[Any]
    notify: list[str] = Field(..., min_length=1, max_length=MAX_NOTIFY)
    cooldown_seconds: int = Field(900, ge=0, le=7 * 24 * 3600)


class AlertOut(Schema):
    id: str
    name: str
    enabled: bool
    conditions: list[dict[str, Any]]
    notify: list[str]
    cooldown_seconds: int
    created_at: str
    updated_at: str


class AlertList(Schema):
    data: list[AlertOut]
    next_cursor: str | None


class FiredOut(Schema):
    alert_id: str
    alert_name: str
    condition: dict[str, Any] | None
    subject: str
    firing: bool
    last_fired_at: str | None
    last_event_id: str | None
    updated_at: str


class FiredList(Schema):
    data: list[FiredOut]


class Detail(Schema):
    detail: str


def alert_out(row: Alert) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "enabled": row.enabled,
            "conditions": row.conditions or [], "notify": row.notify or [],
            "cooldown_seconds": row.cooldown_seconds, "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at)}


async def _check_notify(endpoint_ids: list[str]) -> None:
    found = set(await Endpoint.filter(id__in=endpoint_ids, deleted_at=None)
                .values_list("id", flat=True))
    missing = [endpoint_id for endpoint_id in endpoint_ids if endpoint_id not in found]
    if missing:
        raise HttpError(422, f"notify: no endpoint with id {missing[0]!r}")


async def _alert_or_404(alert_id: str) -> Alert:
    return await get_or_404(Alert, "alert", alert_id)


@router.get("/alerts", response=AlertList, tags=["alerts"])
async def list_alerts(request: HttpRequest, limit: int = 50, cursor: str | None = None):
    rows, next_cursor = await paginate(Alert.all(), limit, cursor)
    return {"data": [alert_out(row) for row in rows], "next_cursor": next_cursor}


@router.post("/alerts", response={201: AlertOut, 422: Detail}, tags=["alerts"])
async def create_alert(request: HttpRequest, payload: AlertIn):
    notify = list(dict.fromkeys(payload.notify))
    await _check_notify(notify)
    row = await Alert.create(id=new_id("alr"), name=payload.name, enabled=payload.enabled,
                             conditions=payload.conditions, notify=notify,
                             cooldown_seconds=payload.cooldown_seconds)
    return Status(201, alert_out(row))


@router.get("/alerts/fired", response=FiredList, tags=["alerts"])
async def fired_alerts(request: HttpRequest, limit: int = 50):
    """The subjects alerts fired for, most recent first: firing now, or resolved."""
    limit = max(1, min(limit, 250))
    states = await AlertState.filter(last_fired_at__not_isnull=True) \
        .order_by("-updated_at").limit(limit)
    alerts = {row.id: row for row in await Alert.filter(
        id__in=list({state.alert_id for state in states}))}
    data = []
    for state in states:
        alert = alerts.get(state.alert_id)
        conditions = (alert.conditions or []) if alert else []
        data.append({
            "alert_id": state.alert_id, "alert_name": alert.name if alert else "(deleted)",
            "condition": conditions[state.condition] if state.condition < len(conditions)
            else None,
            "subject": state.subject, "firing": state.firing,
            "last_fired_at": iso(state.last_fired_at), "last_event_id": state.last_event_id,
            "updated_at": iso(state.updated_at),
        })
    return {"data": data}


@router.get("/alerts/{alert_id}", response=AlertOut, tags=["alerts"])
async def get_alert(request: HttpRequest, alert_id: str):
    return alert_out(await _alert_or_404(alert_id))


@router.patch("/alerts/{alert_id}", response={200: AlertOut, 422: Detail}, tags=["alerts"])
async def update_alert(request: HttpRequest, alert_id: str, payload: AlertPatch):
    row = await _alert_or_404(alert_id)
    given = payload.dict(exclude_unset=True)
    for name, value in given.items():
        if value is None:
            raise HttpError(422, f"{name}: must not be null")
    if "notify" in given:
        if not given["notify"]:
            raise HttpError(422, "notify: at least one endpoint")
        given["notify"] = list(dict.fromkeys(given["notify"]))
        await _check_notify(given["notify"])
    if "conditions" in given:
        given["conditions"] = payload.conditions
        # Condition indexes key the firing state: new conditions start afresh.
        await AlertState.filter(alert_id=row.id).delete()
    for name, value in given.items():
        setattr(row, name, value)
    row.updated_at = datetime.now(UTC)
    await row.save()
    return alert_out(row)


@router.delete("/alerts/{alert_id}", response={204: None}, tags=["alerts"])
async def delete_alert(request: HttpRequest, alert_id: str):
    row = await _alert_or_404(alert_id)
    await AlertState.filter(alert_id=row.id).delete()
    await row.delete()
    return Status(204, None)

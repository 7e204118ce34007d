"""Alert rules as pure functions: what a condition may say, when a subject fires or
clears, and the alert event's body. The evaluator (`dispatch.alerts`) supplies the
observations and the clock and writes the outcome."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

CONDITION_TYPES = (
    "endpoint.disabled", "endpoint.circuit_opened", "delivery.failed",
    "endpoint.failure_rate", "source.rejections",
)
SOURCE_CONDITIONS = frozenset({"source.rejections"})
EVENT_TYPE_PREFIX = "relay.alert."
MAX_CONDITIONS = 20
MAX_WINDOW_SECONDS = 7 * 24 * 3600

Transition = Literal["fire", "clear"]


class BadCondition(ValueError):
    pass


def _number(condition: dict[str, Any], name: str, default: float, *, low: float,
            high: float, index: int) -> float:
    value = condition.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise BadCondition(f"conditions[{index}].{name}: must be a number between {low:g} "
                           f"and {high:g}")
    return float(value)


def _names(condition: dict[str, Any], name: str, index: int) -> list[str]:
    value = condition.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) \
            or len(value) > 1000:
        raise BadCondition(f"conditions[{index}].{name}: must be a list of ids")
    return value


def normalize_condition(condition: Any, index: int) -> dict[str, Any]:
    """The condition with its defaults filled in, or BadCondition naming the problem."""
    if not isinstance(condition, dict):
        raise BadCondition(f"conditions[{index}]: must be an object with a type")
    kind = condition.get("type")
    if kind not in CONDITION_TYPES:
        raise BadCondition(f"conditions[{index}].type: must be one of "
                           f"{', '.join(CONDITION_TYPES)}")
    known = {"type", "endpoints", "sources"}
    out: dict[str, Any] = {"type": kind}
    if kind == "endpoint.failure_rate":
        known |= {"above", "window_seconds", "min_attempts"}
        out["above"] = _number(condition, "above", 0.5, low=0, high=1, index=index)
        out["window_seconds"] = int(_number(condition, "window_seconds", 300, low=10,
                                            high=MAX_WINDOW_SECONDS, index=index))
        out["min_attempts"] = int(_number(condition, "min_attempts", 20, low=1, high=1e9,
                                          index=index))
    elif kind == "source.rejections":
        known |= {"above", "window_seconds"}
        out["above"] = int(_number(condition, "above", 10, low=0, high=1e9, index=index))
        out["window_seconds"] = int(_number(condition, "window_seconds", 300, low=10,
                                            high=MAX_WINDOW_SECONDS, index=index))
    unknown = sorted(set(condition) - known)
    if unknown:
        raise BadCondition(f"conditions[{index}]: unknown key {unknown[0]!r}")
    if kind in SOURCE_CONDITIONS:
        if "endpoints" in condition:
            raise BadCondition(f"conditions[{index}]: {kind} is narrowed by sources, "
                               "not endpoints")
        out["sources"] = _names(condition, "sources", index)
    else:
        if "sources" in condition:
            raise BadCondition(f"conditions[{index}]: {kind} is narrowed by endpoints, "
                               "not sources")
        out["endpoints"] = _names(condition, "endpoints", index)
    return out


def normalize_conditions(conditions: Any) -> list[dict[str, Any]]:
    if not isinstance(conditions, list) or not conditions:
        raise BadCondition("conditions: at least one condition is required")
    if len(conditions) > MAX_CONDITIONS:
        raise BadCondition(f"conditions: at most {MAX_CONDITIONS}")
    return [normalize_condition(item, index) for index, item in enumerate(conditions)]


@dataclass(frozen=True, slots=True)
class StateView:
    firing: bool
    last_fired_at: datetime | None


def transition(state: StateView | None, active: bool, now: datetime, cooldown: float,
               *, again: bool = False) -> Transition | None:
    """What to send for one subject now.

    A subject fires when its condition holds and it did not fire within the cooldown
    (at most one firing per cooldown), and clears once when the condition stops holding.
    `again`: the condition happened anew while firing (another failed delivery): that
    fires again once the cooldown has passed.
    """
    firing = state is not None and state.firing
    last = state.last_fired_at if state is not None else None
    cooled = last is None or (now - last).total_seconds() >= cooldown
    if active and (not firing or again):
        return "fire" if cooled else None
    if not active and firing:
        return "clear"
    return None


def state_key(alert_id: str, condition_index: int, subject: str) -> str:
    return f"{alert_id}:{condition_index}:{subject}"


def describe(condition: dict[str, Any], subject: str, observed: dict[str, Any],
             state: Transition) -> str:
    kind = condition["type"]
    if state == "clear":
        return {
            "endpoint.disabled": f"Endpoint {subject} is enabled again.",
            "endpoint.circuit_opened": f"Endpoint {subject}'s circuit closed: it answers again.",
            "delivery.failed": f"Endpoint {subject} accepted a delivery again.",
            "endpoint.failure_rate": f"Endpoint {subject}'s failure rate is back under "
                                     f"{condition.get('above', 0):.0%}.",
            "source.rejections": f"Source {subject} has {observed.get('count', 0)} refused "
                                 "requests in the window, within the limit again.",
        }[kind]
    if kind == "endpoint.disabled":
        return f"Endpoint {subject} was disabled: {observed.get('reason') or 'no reason given'}."
    if kind == "endpoint.circuit_opened":
        return (f"Endpoint {subject}'s circuit is open after "
                f"{observed.get('failures', 0)} consecutive failures.")
    if kind == "delivery.failed":
        return (f"A delivery to endpoint {subject} failed for good (its retry schedule ran "
                f"out): {observed.get('error') or 'no detail'}.")
    if kind == "endpoint.failure_rate":
        return (f"Endpoint {subject} failed {observed.get('failures', 0)} of "
                f"{observed.get('attempts', 0)} attempts "
                f"({observed.get('rate', 0):.0%}) in the last "
                f"{condition['window_seconds']} s (threshold {condition['above']:.0%}).")
    return (f"Source {subject} refused {observed.get('count', 0)} requests in the last "
            f"{condition['window_seconds']} s (threshold {condition['above']}).")


def alert_body(*, alert_id: str, alert_name: str, condition: dict[str, Any], subject: str,
               observed: dict[str, Any], state: Transition, at: datetime) -> dict[str, Any]:
    return {
        "type": EVENT_TYPE_PREFIX + condition["type"],
        "state": "firing" if state == "fire" else "resolved",
        "alert": {"id": alert_id, "name": alert_name},
        "condition": condition,
        "subject": subject,
        "observed": observed,
        "message": describe(condition, subject, observed, state),
        "at": at.isoformat(),
    }

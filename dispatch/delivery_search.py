"""The delivery log's search: by endpoint, event, statuses and time, bounded per page.

Each shape of search walks one index newest first: an event's deliveries
(`delivery_event_idx`, a handful of rows), an endpoint's (`delivery_endpoint_idx`), one
status (`delivery_status_idx`, one walk per status of a list, merged). An endpoint with
statuses walks the endpoint's index and checks the status on at most
`CANDIDATES_PER_PAGE` rows per page; a page that found fewer than `limit` answers them with a
`next_cursor` that continues after the last row it examined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q

from dispatch.models import Delivery
from dispatch.states import ALL as DELIVERY_STATUSES
from kernel.ids import lowest_id
from kernel.partitions import ids_after

CANDIDATES_PER_PAGE = 2000


class SearchError(ValueError):
    """Bad search input; the message starts with the name of the field."""


def parse_statuses(text: str | Sequence[str] | None, field: str = "status") -> list[str]:
    """`failed,retrying` (or a list) → the statuses, each checked."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    statuses = [part.strip() for part in parts if part.strip()]
    for status in statuses:
        if status not in DELIVERY_STATUSES:
            raise SearchError(f"{field}: {status!r} is not one of {', '.join(DELIVERY_STATUSES)}")
    return list(dict.fromkeys(statuses))


def id_range(since: datetime | None, until: datetime | None) -> tuple[str | None, str | None]:
    """Delivery ids made in [since, until) are in [low, high)."""
    low = lowest_id("dlv", max(since.timestamp(), 0.0)) if since else None
    high = lowest_id("dlv", max(until.timestamp(), 0.0)) if until else None
    return low, high


@dataclass(frozen=True)
class DeliveryQuery:
    endpoint: str | None = None
    event: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Delivery]
    next_cursor_id: str | None


def _bounds(query: DeliveryQuery, after: str | None) -> Q:
    low, high = id_range(query.since, query.until)
    condition = Q()
    if low is not None:
        condition &= Q(id__gte=low)
    if high is not None:
        condition &= Q(id__lt=high)
    if after is not None:
        condition &= Q(id__lt=after)
    return condition


async def _exact(condition: Q, limit: int) -> Page:
    rows = await Delivery.filter(condition).order_by("-id").limit(limit + 1)
    if len(rows) > limit:
        return Page(list(rows[:limit]), rows[limit - 1].id)
    return Page(list(rows), None)


async def search_deliveries(query: DeliveryQuery, limit: int, after: str | None,
                            window: int | None = None) -> Page:
    window = window or CANDIDATES_PER_PAGE
    condition = _bounds(query, after)
    if query.event:
        condition &= Q(event_id=query.event)
        if (low := ids_after("dlv", query.event)) is not None:
            condition &= Q(id__gte=low)
        if query.endpoint:
            condition &= Q(endpoint_id=query.endpoint)
        if query.statuses:
            condition &= Q(status__in=list(query.statuses))
        return await _exact(condition, limit)
    if query.endpoint:
        condition &= Q(endpoint_id=query.endpoint)
        if not query.statuses:
            return await _exact(condition, limit)
        candidates = await (Delivery.filter(condition).order_by("-id").limit(window)
                            .values_list("id", "status"))
        wanted = set(query.statuses)
        matched = [row_id for row_id, status in candidates if status in wanted][:limit + 1]
        found = list(await Delivery.filter(id__in=matched).order_by("-id")) if matched else []
        if len(found) > limit:
            return Page(found[:limit], found[limit - 1].id)
        more = len(candidates) == window
        return Page(found, candidates[-1][0] if more else None)
    if not query.statuses:
        return await _exact(condition, limit)
    merged: list[Delivery] = []
    for status in query.statuses:
        merged.extend(await Delivery.filter(condition, status=status)
                      .order_by("-id").limit(limit + 1))
    merged.sort(key=lambda row: row.id, reverse=True)
    if len(merged) > limit:
        return Page(merged[:limit], merged[limit - 1].id)
    return Page(merged, None)

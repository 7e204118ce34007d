"""The event log's search: filters over events, bounded work per page on any table size.

Filters with an exact index (source, exact event type, the time range as bounds on the id,
which sorts by time) walk the index newest first. The others (an event type prefix, a
delivery status or endpoint, the JSON filter over the body) are *residual*: they are
checked on at most `CANDIDATES_PER_PAGE` candidate rows per page. A page that examined all
its candidates without filling up answers what it found (possibly nothing) with a
`next_cursor` that continues after the last candidate, so a rare match in a huge table
costs many cheap pages instead of one unbounded scan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from hooks.models import Event
from kernel.api import PAGE_BODY_BYTES, within_budget
from kernel.ids import lowest_id

CANDIDATES_PER_PAGE = 2000
"""Candidate events a page with residual filters examines at most."""
BODY_CHUNK = 200
"""Candidate events whose bodies are loaded at once for the JSON filter."""

DELIVERY_STATUSES = ("pending", "delivering", "retrying", "succeeded", "failed", "cancelled")
QUERY_FIELDS = ("source", "event_type", "since", "until", "status", "endpoint", "filter")


class SearchError(ValueError):
    """Bad search input; the message starts with the name of the field."""


@dataclass(frozen=True)
class EventQuery:
    source: str | None = None
    event_type: str | None = None
    """An exact name, or a prefix ending in `*`."""
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    endpoint: str | None = None
    filter: dict[str, Any] | None = None

    @property
    def type_prefix(self) -> str | None:
        if self.event_type and self.event_type.endswith("*"):
            return self.event_type[:-1]
        return None

    @property
    def residual(self) -> bool:
        return bool(self.type_prefix is not None or self.status or self.endpoint
                    or self.filter is not None)


def parse_time(name: str, value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SearchError(f"{name}: not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"{name}: not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_event_query(given: Mapping[str, object]) -> EventQuery:
    """The search from query parameters or a JSON object (`filter` as text or an object)."""
    from kernel.filters import FilterError, validate_filter

    def text(name: str) -> str | None:
        value = given.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise SearchError(f"{name}: must be a string")
        return value

    status = text("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise SearchError(f"status: must be one of {', '.join(DELIVERY_STATUSES)}")
    event_type = text("event_type")
    if event_type is not None and ("*" in event_type[:-1] or event_type == "*"):
        raise SearchError("event_type: an exact name or a prefix ending in * (invoice.*)")
    rule = given.get("filter")
    if isinstance(rule, str):
        if rule == "":
            rule = None
        else:
            try:
                rule = json.loads(rule)
            except ValueError:
                raise SearchError("filter: not valid JSON (URL-encode the JSON filter)") from None
    if rule is not None:
        if not isinstance(rule, dict):
            raise SearchError("filter: must be a JSON object")
        try:
            validate_filter(rule)
        except FilterError as exc:
            raise SearchError(str(exc)) from None
    since, until = parse_time("since", given.get("since")), parse_time("until", given.get("until"))
    if since is not None and until is not None and until <= since:
        raise SearchError("until: must be later than since")
    return EventQuery(source=text("source"), event_type=event_type, since=since, until=until,
                      status=status, endpoint=text("endpoint"), filter=rule)


ID_CLOCK_MARGIN = 1.0
"""Seconds of slack in the id bounds: an id and its `received_at` come from two clock reads,
so the id bounds are loosened by this and `received_at` decides exactly."""


def _id_bound(moment: datetime, slack: float) -> str:
    return lowest_id("evt", max(moment.timestamp() + slack, 0.0))


def candidate_sql(query: EventQuery, after: str | None, window: int) -> tuple[str, list[Any]]:
    """Ids of the next candidates, newest first, on an index (source or type, then id)."""
    where: list[str] = []
    values: list[Any] = []

    def bind(value: Any) -> str:
        values.append(value)
        return f"${len(values)}"

    if query.source:
        where.append(f"source_slug = {bind(query.source)}")
    if query.event_type and query.type_prefix is None:
        where.append(f"event_type = {bind(query.event_type)}")
    if query.since is not None:
        where.append(f"id >= {bind(_id_bound(query.since, -ID_CLOCK_MARGIN))}")
        where.append(f"received_at >= {bind(query.since)}")
    if query.until is not None:
        where.append(f"id < {bind(_id_bound(query.until, ID_CLOCK_MARGIN))}")
        where.append(f"received_at < {bind(query.until)}")
    if after is not None:
        where.append(f"id < {bind(after)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    limit = bind(window)
    return f"SELECT id FROM event {clause} ORDER BY id DESC LIMIT {limit}", values  # noqa: S608


def residual_sql(query: EventQuery, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """Of `ids`, those that pass the residual filters SQL can check (prefix, deliveries)."""
    values: list[Any] = [list(ids)]
    where = ["e.id = ANY($1::text[])"]
    if query.type_prefix is not None:
        values.append(query.type_prefix)
        where.append(f"starts_with(e.event_type, ${len(values)})")
    delivery: list[str] = []
    if query.status:
        values.append(query.status)
        delivery.append(f"d.status = ${len(values)}")
    if query.endpoint:
        values.append(query.endpoint)
        delivery.append(f"d.endpoint_id = ${len(values)}")
    if delivery:
        where.append("EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = e.id AND "  # noqa: S608
                     f"{' AND '.join(delivery)})")
    sql = f"SELECT e.id FROM event e WHERE {' AND '.join(where)} ORDER BY e.id DESC"  # noqa: S608
    return sql, values


async def _ids(sql: str, values: list[Any]) -> list[str]:
    _, rows = await connections.get("default").execute_query(sql, values)
    return [row["id"] for row in rows]


def _body_matches(rule: dict[str, Any] | None, row: Event) -> bool:
    from kernel.filters import matches_filter, parse_document

    return rule is None or matches_filter(rule, parse_document(bytes(row.body)))


@dataclass(frozen=True)
class Page:
    rows: list[Event]
    next_cursor_id: str | None
    """The id to continue below (exclusive), or None on the last page."""
    examined: int


async def search_events(query: EventQuery, limit: int, after: str | None,
                        window: int | None = None) -> Page:
    """One page of the events matching `query`, newest first, below the id `after`."""
    window = window or CANDIDATES_PER_PAGE
    if not query.residual:
        sql, values = candidate_sql(query, after, limit + 1)
        ids = await _ids(sql, values)
        sizes = await Event.filter(id__in=ids[:limit]).order_by("-id").values_list("id", "size")
        kept = within_budget(sizes, PAGE_BODY_BYTES)
        rows = await Event.filter(id__in=kept).order_by("-id") if kept else []
        more = len(ids) > len(kept)
        return Page(list(rows), kept[-1] if more and kept else None, len(ids))
    sql, values = candidate_sql(query, after, window)
    candidates = await _ids(sql, values)
    found: list[Event] = []
    total = 0
    for start in range(0, len(candidates), BODY_CHUNK):
        chunk = candidates[start:start + BODY_CHUNK]
        if query.type_prefix is not None or query.status or query.endpoint:
            chunk = await _ids(*residual_sql(query, chunk))
        if not chunk:
            continue
        for row in await Event.filter(id__in=chunk).order_by("-id"):
            if _body_matches(query.filter, row):
                total += row.size or 0
                if found and total > PAGE_BODY_BYTES:
                    return Page(found, found[-1].id, start + BODY_CHUNK)
                found.append(row)
                if len(found) > limit:
                    return Page(found[:limit], found[limit - 1].id, start + BODY_CHUNK)
    more = len(candidates) == window
    return Page(found, candidates[-1] if more else None, len(candidates))


async def all_matching_ids(query: EventQuery, cap: int) -> list[str]:
    """Every matching event id (newest first), at most `cap` + 1 of them (the caller
    refuses more than `cap`), walked page by page."""
    ids: list[str] = []
    after: str | None = None
    while True:
        page = await search_events(query, min(cap + 1 - len(ids), 250), after)
        ids.extend(row.id for row in page.rows)
        if len(ids) > cap or page.next_cursor_id is None:
            return ids
        after = page.next_cursor_id

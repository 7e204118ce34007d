"""Time series for the charts (`GET /api/v1/stats/series`), read from the rollups.

A series is a list of points `{"t", "value"}`, one per `step` seconds, `t` being the
start of the step. Steps are aligned on the epoch (a step of 3600 starts on the hour).
Counts (`events`, `deliveries`, `failures`) are totals over the step; `success_rate`
and the percentiles are over the attempts of the step, null when there were none.
Steps that are whole hours read the hour rows, others the minute rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from dispatch.latency import percentile, rounded_ms
from dispatch.rollups import HOUR, MINUTE, TOTAL_KEYS, floor_to, series_sql

METRICS = ("events", "deliveries", "failures", "success_rate", "p50_ms", "p95_ms")
PARAMETERS = ("metric", "since", "until", "step", "endpoint", "source")
DEFAULT_STEP = 60
DEFAULT_POINTS = 60
MAX_POINTS = 1500


class SeriesError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    metric: str
    step: int
    since: datetime
    """The start of the first point."""
    until: datetime
    """The end of the last point."""
    endpoint: str | None = None
    source: str | None = None

    @property
    def points(self) -> int:
        return int((self.until - self.since).total_seconds()) // self.step

    @property
    def span(self) -> int:
        return HOUR if self.step % HOUR == 0 else MINUTE


def _moment(field: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        raise SeriesError(field, f"{text!r} is not an ISO 8601 time "
                                 "(e.g. 2026-11-26T05:00:00+00:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ceil(moment: datetime, step: int) -> datetime:
    floor = floor_to(moment, step)
    return floor if floor == moment else floor + timedelta(seconds=step)


def parse_series_query(params: Mapping[str, str], now: datetime) -> SeriesQuery:
    """Validate the query string; raises SeriesError naming the parameter at fault."""
    for name in params:
        if name not in PARAMETERS:
            raise SeriesError(name, f"unknown query parameter (known: {', '.join(PARAMETERS)})")
    metric = params.get("metric")
    if not metric:
        raise SeriesError("metric", f"required, one of {', '.join(METRICS)}")
    if metric not in METRICS:
        raise SeriesError("metric", f"{metric!r} is not one of {', '.join(METRICS)}")
    step_text = params.get("step") or str(DEFAULT_STEP)
    try:
        step = int(step_text)
    except ValueError:
        raise SeriesError("step", f"{step_text!r} is not a whole number of seconds") from None
    if step < MINUTE or step % MINUTE:
        raise SeriesError("step", "must be a positive multiple of 60 seconds")
    until = _ceil(_moment("until", params["until"]) if params.get("until") else now, step)
    if params.get("since"):
        since = floor_to(_moment("since", params["since"]), step)
    else:
        since = until - timedelta(seconds=step * DEFAULT_POINTS)
    if since >= until:
        raise SeriesError("since", "must be earlier than until")
    query = SeriesQuery(metric, step, since, until, params.get("endpoint") or None,
                        params.get("source") or None)
    if query.points > MAX_POINTS:
        raise SeriesError("step", f"{query.points} points asked for, at most {MAX_POINTS}: "
                                  "use a larger step or a shorter range")
    if metric == "events" and query.endpoint:
        raise SeriesError("endpoint", "events are counted per source: use source=")
    if metric != "events" and query.source:
        raise SeriesError("source", "only the events metric is counted per source")
    return query


def point_value(metric: str, row: Any) -> float | int | None:
    """The value of one point from its summed rollup row (None: no row for the step)."""
    if metric == "events":
        return int(row["events"]) if row is not None else 0
    if metric in ("deliveries", "failures"):
        key = "attempts" if metric == "deliveries" else "failures"
        return int(row[key]) if row is not None else 0
    if row is None or not row["attempts"]:
        return None
    if metric == "success_rate":
        return round(int(row["successes"]) / int(row["attempts"]), 4)
    return rounded_ms(percentile(row["latency"], 0.5 if metric == "p50_ms" else 0.95))


async def read_series(connection: asyncpg.Connection, query: SeriesQuery) -> dict[str, Any]:
    if query.metric == "events":
        sql = series_sql("source_rollup", False, query.source is not None)
        narrow = query.source
    else:
        sql = series_sql("endpoint_rollup", query.metric in ("p50_ms", "p95_ms"),
                         query.endpoint is not None)
        narrow = query.endpoint
    args: list[Any] = [query.span, query.since, query.until, query.step]
    if narrow is not None:
        args.append(narrow)
    elif query.metric != "events":
        args.append(TOTAL_KEYS)
    rows = {row["point"]: row for row in await connection.fetch(sql, *args)}
    points = [
        {"t": (query.since + timedelta(seconds=index * query.step)).isoformat(),
         "value": point_value(query.metric, rows.get(index))}
        for index in range(query.points)
    ]
    return {"metric": query.metric, "step": query.step, "points": points}

"""Admin API for stats read from the rollups: the health of every endpoint at once and the
time series behind the dashboard's charts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from dispatch.endpoints import utcnow
from dispatch.models import Endpoint
from dispatch.queue import pooled
from dispatch.series import MAX_POINTS, METRICS, SeriesError, parse_series_query, read_series
from dispatch.stats import OPEN_COUNT_CAP, endpoints_health
from hooks.models import Source

router = Router()


class StatsOut(Schema):
    success_rate: float | None = Field(
        ..., description="Successful attempts (2xx) / attempts, 0 to 1, over the last 24 h; "
                         "null without attempts.")
    attempts: int = Field(..., description="Attempts started in the last 24 h.")
    failures: int = Field(..., description="Of those, attempts without a 2xx answer.")
    p50_ms: float | None = Field(..., description="Median attempt duration (ms), from a "
                                                  "histogram with buckets about 19 % wide.")
    p95_ms: float | None = Field(..., description="95th percentile of attempt durations (ms).")
    p99_ms: float | None = Field(..., description="99th percentile of attempt durations (ms).")
    in_flight: int = Field(..., description="Deliveries being sent now (counting stops at "
                                            f"{OPEN_COUNT_CAP:,}).")
    pending: int = Field(..., description="Deliveries waiting, retries included (counting "
                                          f"stops at {OPEN_COUNT_CAP:,}).")
    circuit: str = Field(..., description="closed, open (cooling down) or half_open (one "
                                          "probe may go).")


class EndpointHealthOut(StatsOut):
    endpoint_id: str = Field(..., description="The endpoint these figures are about.")


class HealthList(Schema):
    data: list[EndpointHealthOut] = Field(
        ..., description="One entry per endpoint (deleted ones left out), in id order.")


class PointOut(Schema):
    t: str = Field(..., description="Start of the step (ISO 8601, UTC).")
    value: int | float | None = Field(
        ..., description="The metric over the step: a count for events, deliveries and "
                         "failures; a ratio or milliseconds otherwise, null without attempts.")


class SeriesOut(Schema):
    metric: str = Field(..., description="The metric asked for.")
    step: int = Field(..., description="Seconds per point.")
    points: list[PointOut] = Field(..., description="Oldest first, one per step, empty "
                                                    "steps included.")


class Detail(Schema):
    detail: str


@router.get("/stats/endpoints", response=HealthList, tags=["stats"],
            summary="Health of every endpoint",
            description="The stats of `GET /endpoints/{id}/stats` for every endpoint in one "
                        "answer, read from per-minute and per-hour rollups.")
async def all_endpoint_stats(request: HttpRequest) -> dict[str, Any]:
    if request.GET:
        name = next(iter(request.GET))
        raise HttpError(422, f"{name}: unknown query parameter (this route takes none)")
    return {"data": await endpoints_health()}


@router.get("/stats/series", response={200: SeriesOut, 404: Detail, 422: Detail},
            tags=["stats"], summary="A metric over time",
            description="Points of one metric per `step` seconds between `since` and "
                        "`until`, for the charts. Read from the rollups.")
async def stats_series(
    request: HttpRequest,
    metric: str | None = Query(None, description=f"One of {', '.join(METRICS)}. deliveries "
                               "and failures count attempts."),
    since: str | None = Query(None, description="ISO 8601 start (rounded down to a step); "
                              "default 60 steps before until."),
    until: str | None = Query(None, description="ISO 8601 end (rounded up to a step); "
                              "default now (the last point is the current step so far)."),
    step: str | None = Query(None, description="Seconds per point, a multiple of 60; "
                             f"default 60; at most {MAX_POINTS} points per answer."),
    endpoint: str | None = Query(None, description="Only this endpoint's attempts (not "
                                 "for events)."),
    source: str | None = Query(None, description="Only this source's events (events only)."),
) -> dict[str, Any]:
    try:
        query = parse_series_query(
            {name: request.GET.get(name, "") for name in request.GET}, utcnow())
    except SeriesError as exc:
        raise HttpError(422, str(exc)) from None
    if query.endpoint is not None and not await Endpoint.exists(id=query.endpoint):
        raise HttpError(404, f"no endpoint with id {query.endpoint!r}")
    if query.source is not None and not await Source.exists(slug=query.source):
        raise HttpError(404, f"no source with slug {query.source!r}")
    async with pooled() as connection:
        return await read_series(connection, query)

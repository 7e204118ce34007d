"""One JSON log line per HTTP request, with method, path, status and duration, and no
secret anywhere in the logs: not the Authorization header, not a token in the query
string, not a source's secret."""

from __future__ import annotations

import json
import logging

import httpx

from kernel.logs import JsonFormatter, log_attempt
from tests.servers import wait_until

QUERY_SECRET = "q-secret-5f1d0c9e"
HEADER_SECRET = "h-secret-8a7b6c5d"


def _request_lines(text: str) -> list[dict]:
    return [entry for entry in map(json.loads, (line for line in text.splitlines()
                                                if line.startswith("{")))
            if entry["logger"] == "relay.request"]


async def test_each_request_is_one_json_line_without_secrets(json_relay, admin_token, admin):
    start = len(json_relay.output())
    async with httpx.AsyncClient(base_url=json_relay.base, timeout=10) as http:
        made = [
            ("POST", "/api/v1/sources", 201, await http.post("/api/v1/sources", headers=admin, json={
                "slug": "by-query", "verification": {"kind": "token", "query_param": "token",
                                                     "secret": QUERY_SECRET}})),
            ("POST", "/api/v1/sources", 201, await http.post("/api/v1/sources", headers=admin, json={
                "slug": "by-header", "verification": {"kind": "token", "secret": HEADER_SECRET}})),
            ("POST", "/in/by-query", 202, await http.post(
                f"/in/by-query?token={QUERY_SECRET}&x=1", content=b'{"a": 1}')),
            ("POST", "/in/by-query", 401, await http.post(
                "/in/by-query?token=wrong-guess-123", content=b"{}")),
            ("POST", "/in/by-header", 202, await http.post(
                "/in/by-header", content=b"{}", headers={"x-relay-token": HEADER_SECRET})),
            ("POST", "/in/missing", 404, await http.post(
                f"/in/missing?token={QUERY_SECRET}", content=b"{}")),
            ("GET", "/api/v1/sources", 200, await http.get("/api/v1/sources", headers=admin)),
            ("GET", "/api/v1/sources", 401, await http.get(
                "/api/v1/sources", headers={"Authorization": "Bearer rly_not-a-real-token"})),
            ("GET", "/metrics", 200, await http.get("/metrics", headers=admin)),
        ]
    for _, _, status, answer in made:
        assert answer.status_code == status, answer.text

    def logged() -> list[dict]:
        return _request_lines(json_relay.output()[start:])

    await wait_until(lambda: len(logged()) >= len(made), timeout=10, message="the log lines")
    lines = logged()
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        (method, path, status) for method, path, status, _ in made]
    for line in lines:
        assert line["level"] == "INFO"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert "?" not in line["path"] and "?" not in line["message"]

    everything = json_relay.output()
    for secret in (admin_token, QUERY_SECRET, HEADER_SECRET, "wrong-guess-123",
                   "rly_not-a-real-token"):
        assert secret not in everything


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_attempt_log_line_carries_the_delivery_fields():
    logger = logging.getLogger("relay.attempt")
    kept = _Keep()
    logger.addHandler(kept)
    level = logger.level
    logger.setLevel(logging.INFO)  # as with RELAY_ATTEMPT_LOG=all
    try:
        log_attempt(delivery_id="dlv_1", event_id="evt_1", endpoint_id="ep_1", attempt=2,
                    status_code=None, error="timeout", duration_ms=15000.4, outcome="retrying")
        log_attempt(delivery_id="dlv_2", event_id="evt_2", endpoint_id="ep_1", attempt=1,
                    status_code=204, error=None, duration_ms=3.2, outcome="succeeded")
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
    first, second = (json.loads(JsonFormatter().format(record)) for record in kept.records)
    assert first["level"] == "WARNING" and second["level"] == "INFO"
    assert first["message"] == "delivery dlv_1 attempt 2 to ep_1: timeout in 15000ms -> retrying"
    assert {key: first[key] for key in ("delivery_id", "event_id", "endpoint_id", "attempt",
                                        "status_code", "error", "outcome")} == {
        "delivery_id": "dlv_1", "event_id": "evt_1", "endpoint_id": "ep_1", "attempt": 2,
        "status_code": None, "error": "timeout", "outcome": "retrying"}
    assert second["status_code"] == 204


def test_django_request_objects_are_logged_without_their_query_string():
    from django.test import RequestFactory

    request = RequestFactory().get("/in/x", {"token": "leaky-token"})
    record = logging.makeLogRecord({"msg": "Internal Server Error: %s", "args": ("/in/x",),
                                    "request": request, "status_code": 500})
    line = JsonFormatter().format(record)
    assert "leaky-token" not in line
    assert json.loads(line)["request"] == "GET /in/x"


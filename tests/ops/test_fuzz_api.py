"""Schemathesis against Relay's own OpenAPI schema: every operation, an admin token, a
live server on 127.0.0.1. No answer may be a 5xx or break the schema it documents.

The normal suite spends a bounded budget; a longer run:

    RELAY_FUZZ_EXAMPLES=5000 make test PYTEST_ARGS=tests/ops

(schemathesis then fills 600 s, or RELAY_FUZZ_SECONDS.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.ops.conftest import relay_env, run
from tests.ops.fuzz import EXAMPLES

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


async def test_api_schema_holds_under_schemathesis(client, relay_server, admin_token, tmp_path):
    schema = (await client.get("/api/v1/openapi.json")).json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert operations >= 8
    report = tmp_path / "report.json"
    max_time = os.environ.get("RELAY_FUZZ_SECONDS") or ("600" if EXAMPLES else "25")
    command = [
        SCHEMATHESIS, "run", f"{relay_server}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {admin_token}",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES or 12),
        "--max-time", max_time,
        "--workers", "1",
        "--request-timeout", "20",
        "--suppress-health-check", "all",
        "--report", "json", "--report-json-path", str(report),
        "--output-truncate", "false",
        *(["--seed", "20261201"] if not EXAMPLES else []),
    ]
    env = relay_env(SCHEMATHESIS_HOOKS="", NO_COLOR="1", COLUMNS="200")
    env.pop("RELAY_FUZZ_EXAMPLES", None)
    code, out, err = await run(command, env, timeout=int(max_time) + 120)
    summary = out[-6000:] + err[-2000:]
    assert code == 0, f"schemathesis found problems:\n{summary}"
    assert report.exists(), summary
    assert json.loads(report.read_text()), summary


async def test_ids_longer_than_any_id_are_not_server_errors(client, admin):
    """Found by schemathesis: a path id over the column's length raised a 500."""
    long_id = "x" * 41
    for path in (f"/api/v1/sources/{long_id}", f"/api/v1/events/{long_id}",
                 f"/api/v1/endpoints/{long_id}/secret", f"/api/v1/deliveries/{long_id}"):
        answer = await client.get(path, headers=admin)
        assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)

"""The baseline: a minimal raw ASGI app doing one asyncpg INSERT of an event row per request.

Same table, same columns and the same shape of values as Relay's ingest (a fresh id, the
time, the request's headers as JSON, the body bytes), an asyncpg pool of the same size with
asyncpg's defaults, and a `202 {"id": ...}` answer. No verification, no framework.

Run by bench/ingest.py under uvicorn: BENCH_DATABASE_URL and BENCH_POOL_SIZE in the env.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import asyncpg

from kernel.ids import new_id

INSERT = (
    "INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at,"
    " method, query, headers, content_type, size, body)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)"
)

pool: asyncpg.Pool | None = None


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope, receive, send) -> None:
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(
                    os.environ["BENCH_DATABASE_URL"], min_size=1,
                    max_size=int(os.environ["BENCH_POOL_SIZE"]),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = await _read_body(receive)
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    event_id = new_id("evt")
    await pool.execute(
        INSERT, event_id, "src_baseline", "baseline", None, None, datetime.now(UTC),
        scope["method"], scope["query_string"].decode("latin-1"), json.dumps(headers),
        headers.get("content-type", ""), len(body), body,
    )
    answer = json.dumps({"id": event_id}).encode()
    await send({"type": "http.response.start", "status": 202, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode()),
    ]})
    await send({"type": "http.response.body", "body": answer})

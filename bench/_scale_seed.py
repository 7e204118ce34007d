"""Fill a migrated Relay database with realistic rows spread over days, in SQL.

    .venv/bin/python bench/_scale_seed.py URL [--events 10000000] [--deliveries 3]
                                              [--days 30] [--end-days-ago 0]

Events get ids made the way kernel/ids.py makes them (time in milliseconds, base32),
evenly spread over `--days` days ending `--end-days-ago` days ago, so they land in their
day partitions; each has `--deliveries` deliveries (to rotating endpoints among
`ENDPOINTS`) with one attempt each. Nearly every delivery is final; one in a thousand is
pending, retrying or delivering, the way a live system looks. Secondary indexes are
dropped while filling and built again after (progress printed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernel import partitions

ENDPOINTS = 20
DAY_MS = 86_400_000
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def b32_sql(expression: str) -> str:
    """SQL for the 10 base32 characters of a millisecond count (as kernel/ids.py writes it)."""
    return " || ".join(
        f"substr('{_ALPHABET}', ((({expression}) >> {5 * shift}) & 31)::int + 1, 1)"
        for shift in range(9, -1, -1))


def _chunk_sql(first_ms: int, step_ms: float, first: int, last: int, per_event: int) -> str:
    ms = f"({first_ms}::bigint + (g * {step_ms})::bigint)"
    n = f"(s.g * {per_event} + k)"
    status = (f"CASE WHEN {n} % 1000 = 7 THEN 'pending' WHEN {n} % 1000 = 8 THEN 'retrying'"
              f" WHEN {n} % 1000 = 9 THEN 'delivering' WHEN {n} % 50 = 3 THEN 'failed'"
              " ELSE 'succeeded' END")
    return f"""
SET synchronous_commit = off;
CREATE TEMP TABLE seed_chunk ON COMMIT DROP AS
SELECT g, to_timestamp({ms} / 1000.0) AS stamp, {b32_sql(ms)} AS t
FROM generate_series({first}, {last}) AS g;
INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at, method,
                   query, headers, content_type, size, body)
SELECT 'evt_' || t || lpad(to_hex(g), 16, '0'), 'src_' || (g % 5), 'source' || (g % 5),
       'order.' || (g % 7), 'k' || g, stamp, 'POST', '', '{{}}', 'application/json', 64,
       convert_to(repeat('x', 64), 'UTF8')
FROM seed_chunk;
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, lease_owner, lease_expires_at, created_at, completed_at,
                      last_status_code)
SELECT 'dlv_' || s.t || lpad(to_hex({n}), 16, '0'), 'evt_' || s.t || lpad(to_hex(s.g), 16, '0'),
       'ep_' || ((s.g + k) % {ENDPOINTS}), v.status, 1, 0,
       CASE WHEN v.status IN ('pending', 'retrying') THEN s.stamp + interval '1 minute' END,
       CASE WHEN v.status = 'delivering' THEN 'seed' END,
       CASE WHEN v.status = 'delivering' THEN s.stamp + interval '30 seconds' END,
       s.stamp, CASE WHEN v.status IN ('succeeded', 'failed') THEN s.stamp END,
       CASE WHEN v.status = 'failed' THEN 500 ELSE 204 END
FROM seed_chunk AS s, generate_series(0, {per_event - 1}) AS k,
     LATERAL (SELECT {status} AS status) AS v;
INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms, status_code,
                     request_headers, response_headers, response_body)
SELECT 'att_' || s.t || lpad(to_hex({n}), 16, '0'), 'dlv_' || s.t || lpad(to_hex({n}), 16, '0'),
       'ep_' || ((s.g + k) % {ENDPOINTS}), 1, s.stamp, 12.5, 204, '{{}}', '{{}}', ''
FROM seed_chunk AS s, generate_series(0, {per_event - 1}) AS k;
"""


async def seed(url: str, events: int, per_event: int = 3, days: int = 30,
               end_days_ago: float = 0, say: Callable[[str], None] = print,
               chunk: int = 250_000) -> None:
    connection = await asyncpg.connect(url, command_timeout=None)
    try:
        end = datetime.now(UTC) - timedelta(days=end_days_ago)
        start = end - timedelta(days=days)
        await partitions.ensure_partitions(connection, start.date(), end.date())
        indexes = await connection.fetch(
            "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname IN ('event', 'delivery',"
            " 'attempt') AND NOT i.indisprimary")
        for row in indexes:
            await connection.execute(f"DROP INDEX {row['name']}")
        say(f"Seeding {events:,} events, {events * per_event:,} deliveries and as many "
            f"attempts over {days} days ending {end:%Y-%m-%d %H:%M} UTC ...")
        started = time.monotonic()
        first_ms = int(start.timestamp() * 1000)
        step = days * DAY_MS / events
        for first in range(0, events, chunk):
            last = min(events, first + chunk) - 1
            async with connection.transaction():
                await connection.execute(_chunk_sql(first_ms, step, first, last, per_event))
            elapsed = time.monotonic() - started
            say(f"  {last + 1:,} / {events:,} events ({(last + 1) / elapsed:,.0f}/s)")
        say(f"  building {len(indexes)} indexes again ...")
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for row in indexes:
            await connection.execute(row["definition"].replace(" ON ONLY ", " ON "))
            say(f"    {row['name']} ({time.monotonic() - started:.0f} s)")
        for table in ("event", "delivery", "attempt"):
            await connection.execute(f"VACUUM ANALYZE {table}")
        size = await connection.fetchval(
            "SELECT pg_size_pretty(pg_database_size(current_database()))")
        say(f"  seeded in {time.monotonic() - started:.0f} s; database size {size}")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--deliveries", type=int, default=3, help="per event (3)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end-days-ago", type=float, default=0)
    args = parser.parse_args()
    asyncio.run(seed(args.url, args.events, args.deliveries, args.days, args.end_days_ago,
                     say=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()

"""The reads the dashboard and the API make every few seconds, on a production-sized database.

    .venv/bin/python bench/stats_reads.py [--attempts 10000000] [--endpoints 10]
                                          [--backlog 200000] [--repeat 40]

Starts a throwaway PostgreSQL 16, migrates it, and fills it with SQL: `--attempts`
attempts spread evenly over the last 24 hours across `--endpoints` endpoints (durations
log-normal, 5 % failures), the rollup rows those attempts make (computed from the attempt
table by SQL, so both agree), events per minute for three sources, and open deliveries
(a backlog of `--backlog` waiting on the first endpoint, a few on the others).

Then times, in this process (asyncpg through Relay's own pool, as the API does), each
read `--repeat` times: one endpoint's stats, the health of every endpoint, each series
metric over 1 h (step 60) and 24 h (step 60 and 3600), and the live `stats` message.
Prints the median and the 95th percentile of each, and the old endpoint stats query
(percentiles over 24 h of attempts) on the same data for comparison. Exits 1 when a
read's median is 20 ms or more, or when the rollups disagree with the attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from _servers import ROOT, BenchError, Postgres, manage

LIMIT_MS = 20.0
API_ONLY = " (API only)"
"""Reads the API allows but the dashboard does not make (its 24-hour charts read hour
points): printed, not held to LIMIT_MS."""
CHUNK = 500_000


def say(line: str = "") -> None:
    print(line, flush=True)


def bench_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update({
        "RELAY_DATABASE_URL": database_url,
        "RELAY_DATA_DIR": str(data_dir),
        "RELAY_METRICS_DIR": str(data_dir / "metrics"),
        "RELAY_SECRET_KEY": secrets.token_urlsafe(32),
        "RELAY_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "relay.settings",
    })
    return env


def bucket_sql(duration: str) -> str:
    """dispatch.latency.bucket_of in SQL: how many bounds 2^(k/4), k = -8..68, are <= it."""
    return (f"least(greatest(floor(4 * ln(greatest({duration}, 1e-9)) / ln(2))::int + 9, 0), "
            f"77)")


async def seed(connection: Any, args: argparse.Namespace) -> None:
    from dispatch.latency import BUCKETS

    if BUCKETS != 78:
        raise BenchError("the SQL bucket formula assumes 78 buckets; update bucket_sql()")
    endpoints = [f"ep_bench{n:022d}" for n in range(args.endpoints)]
    started = time.monotonic()
    await connection.execute("""
        INSERT INTO endpoint (id, url, description, enabled, secret_encrypted, event_types,
                              sources, max_in_flight, consecutive_failures,
                              created_at, updated_at)
        SELECT id, 'http://127.0.0.1:9/', '', true, 'x', '[]', '[]', 10, 0, now(), now()
        FROM unnest($1::text[]) AS id""", endpoints)
    say(f"Seeding {args.attempts:,} attempts over 24 h on {args.endpoints} endpoints ...")
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'attempt'"
        " AND indexname NOT LIKE '%pkey'")
    for index in indexes:
        await connection.execute(f"DROP INDEX {index['indexname']}")
    await connection.execute("SET synchronous_commit = off")
    for first in range(1, args.attempts + 1, CHUNK):
        last = min(args.attempts, first + CHUNK - 1)
        await connection.execute("""
            INSERT INTO attempt (id, delivery_id, endpoint_id, number, started_at, duration_ms,
                                 status_code, request_headers, response_headers, response_body)
            SELECT 'att_0' || lpad(g::text, 25, '0'), 'dlv_0' || lpad(g::text, 25, '0'),
                   ($3::text[])[(g % $4) + 1], 1,
                   now() - interval '24 hours' + (g::float8 / $5) * interval '24 hours',
                   exp(3.5 + 0.9 * (random() + random() + random() + random() - 2)),
                   CASE WHEN random() < 0.95 THEN 200 ELSE 500 END, '{}', '{}', ''
            FROM generate_series($1::int, $2::int) AS g""",
            first, last, endpoints, args.endpoints, float(args.attempts))
        rate = last / (time.monotonic() - started)
        say(f"  {last:,} / {args.attempts:,} ({rate:,.0f}/s)")
    say(f"  building {len(indexes)} indexes again ...")
    await connection.execute("SET maintenance_work_mem = '512MB'")
    for index in indexes:
        await connection.execute(index["indexdef"])

    say("  rollups from the attempts (minutes, then hours from the minutes) ...")
    await connection.execute(f"""
        INSERT INTO endpoint_rollup (endpoint_id, span, start_at, attempts, successes, failures,
                                     duration_ms_sum, latency)
        WITH per_bucket AS (
            SELECT endpoint_id,
                   to_timestamp(floor(extract(epoch FROM started_at) / 60) * 60) AS start_at,
                   {bucket_sql('duration_ms')} AS bucket, count(*) AS n,
                   count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS ok,
                   sum(duration_ms) AS total
            FROM attempt GROUP BY 1, 2, 3
        ), keys AS (
            SELECT endpoint_id, start_at, sum(n) AS n, sum(ok) AS ok, sum(total) AS total
            FROM per_bucket GROUP BY 1, 2
        ), grid AS (
            SELECT k.endpoint_id, k.start_at,
                   array_agg(coalesce(p.n, 0)::int ORDER BY b) AS latency
            FROM keys AS k CROSS JOIN generate_series(0, 77) AS b
            LEFT JOIN per_bucket AS p ON p.endpoint_id = k.endpoint_id
                                     AND p.start_at = k.start_at AND p.bucket = b
            GROUP BY 1, 2
        )
        SELECT k.endpoint_id, 60, k.start_at, k.n, k.ok, k.n - k.ok, k.total, g.latency
        FROM keys AS k JOIN grid AS g USING (endpoint_id, start_at)""")
    await connection.execute("""
        INSERT INTO endpoint_rollup (endpoint_id, span, start_at, attempts, successes, failures,
                                     duration_ms_sum, latency)
        WITH minutes AS (
            SELECT r.*, to_timestamp(floor(extract(epoch FROM start_at) / 3600) * 3600) AS hour
            FROM endpoint_rollup AS r WHERE span = 60
        ), per_bucket AS (
            SELECT endpoint_id, hour, i, sum(v)::int AS n
            FROM minutes, unnest(latency) WITH ORDINALITY AS u(v, i) GROUP BY 1, 2, 3
        ), arrays AS (
            SELECT endpoint_id, hour, array_agg(n ORDER BY i) AS latency
            FROM per_bucket GROUP BY 1, 2
        ), totals AS (
            SELECT endpoint_id, hour, sum(attempts) AS a, sum(successes) AS s,
                   sum(failures) AS f, sum(duration_ms_sum) AS d
            FROM minutes GROUP BY 1, 2
        )
        SELECT t.endpoint_id, 3600, t.hour, t.a, t.s, t.f, t.d, arrays.latency
        FROM totals AS t JOIN arrays USING (endpoint_id, hour)""")
    say("  the all-endpoint total rows (one shard, as with one dispatcher) ...")
    await connection.execute("""
        INSERT INTO endpoint_rollup (endpoint_id, span, start_at, attempts, successes, failures,
                                     duration_ms_sum, latency)
        WITH per_bucket AS (
            SELECT span, start_at, i, sum(v)::int AS n
            FROM endpoint_rollup, unnest(latency) WITH ORDINALITY AS u(v, i) GROUP BY 1, 2, 3
        ), arrays AS (
            SELECT span, start_at, array_agg(n ORDER BY i) AS latency
            FROM per_bucket GROUP BY 1, 2
        ), totals AS (
            SELECT span, start_at, sum(attempts) AS a, sum(successes) AS s,
                   sum(failures) AS f, sum(duration_ms_sum) AS d
            FROM endpoint_rollup GROUP BY 1, 2
        )
        SELECT '*0', t.span, t.start_at, t.a, t.s, t.f, t.d, arrays.latency
        FROM totals AS t JOIN arrays USING (span, start_at)""")
    say("  events per minute and hour for three sources ...")
    await connection.execute("""
        INSERT INTO source_rollup (source, span, start_at, events)
        SELECT s, 60, date_trunc('minute', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                      - m * interval '1 minute', 1000 + (random() * 500)::int
        FROM unnest(ARRAY['github', 'stripe', 'shop']) AS s, generate_series(0, 1440) AS m""")
    await connection.execute("""
        INSERT INTO source_rollup (source, span, start_at, events)
        SELECT source, 3600, date_trunc('hour', start_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
               sum(events)
        FROM source_rollup WHERE span = 60 GROUP BY 1, 3""")
    say(f"  open deliveries: {args.backlog:,} waiting on the first endpoint, a few on the rest")
    await connection.execute("""
        INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                              next_attempt_at, created_at)
        SELECT 'dlv_1' || lpad(g::text, 25, '0'), 'evt_1' || lpad(g::text, 25, '0'),
               CASE WHEN g <= $1 THEN ($2::text[])[1] ELSE ($2::text[])[1 + g % $3] END,
               CASE WHEN g > $1 AND g % 10 = 0 THEN 'delivering'
                    WHEN g % 2 = 0 THEN 'retrying' ELSE 'pending' END,
               0, 0, now() + interval '1 hour', now()
        FROM generate_series(1, $1 + 50 * $3) AS g""", args.backlog, endpoints, args.endpoints)
    say("  VACUUM ANALYZE ...")
    for table in ("attempt", "delivery", "endpoint", "endpoint_rollup", "source_rollup"):
        await connection.execute(f"VACUUM ANALYZE {table}")
    size = await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    rollup_size = await connection.fetchval(
        "SELECT pg_size_pretty(pg_total_relation_size('endpoint_rollup'))")
    say(f"  seeded in {time.monotonic() - started:.0f} s; database {size}, endpoint_rollup "
        f"{rollup_size}")


OLD_ATTEMPTS = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)
           AS failures,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms) AS latency
FROM attempt
WHERE endpoint_id = $1 AND started_at > now() - interval '24 hours'
"""
OLD_OPEN = """
SELECT count(*) FILTER (WHERE status = 'delivering') AS in_flight,
       count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS pending
FROM delivery
WHERE endpoint_id = $1 AND status IN ('pending', 'retrying', 'delivering')
"""


async def timed(label: str, read: Callable[[], Awaitable[Any]], repeat: int,
                results: list[tuple[str, float, float]]) -> Any:
    answer = await read()  # warm-up (plans, caches)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await read()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    results.append((label, median, p95))
    say(f"  {label:<44} median {median:8.2f} ms   p95 {p95:8.2f} ms")
    return answer


async def explain(endpoint: str) -> None:
    """Print the plans of the rollup reads (to see why one is slow)."""
    from dispatch.endpoints import utcnow
    from dispatch.queue import pooled
    from dispatch.rollups import SUMS_BY_ENDPOINT, SUMS_OF_ENDPOINT, last_day, window_bounds
    from dispatch.stats import (
        _INDEX_SCANS_ONLY,
        _LIVE_OPEN,
        _OPEN_OF_ALL,
        _OPEN_OF_ENDPOINT,
        OPEN_COUNT_CAP,
    )

    bounds = window_bounds(*last_day(utcnow()))
    statements = [(SUMS_OF_ENDPOINT, [*bounds, endpoint]), (SUMS_BY_ENDPOINT, bounds),
                  (_OPEN_OF_ENDPOINT, [OPEN_COUNT_CAP, endpoint]),
                  (_OPEN_OF_ALL, [OPEN_COUNT_CAP]), (_LIVE_OPEN, [])]
    async with pooled() as connection, connection.transaction():
        for sql, params in statements:
            if sql not in (SUMS_OF_ENDPOINT, SUMS_BY_ENDPOINT):
                await connection.execute(_INDEX_SCANS_ONLY)
            plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
            say("\n".join(row[0] for row in plan))
            say("-" * 60)


async def measure(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from dispatch.endpoints import utcnow
    from dispatch.queue import pooled
    from dispatch.rollups import last_day
    from dispatch.series import METRICS, parse_series_query, read_series
    from dispatch.stats import endpoint_stats, endpoints_health, live_stats
    from kernel.database import start_database, stop_database

    await start_database()
    problems: list[str] = []
    try:
        seeding = await asyncpg.connect(os.environ["RELAY_DATABASE_URL"], command_timeout=None)
        try:
            await seed(seeding, args)
        finally:
            await seeding.close()
        endpoint = "ep_bench" + "0" * 22
        if args.explain:
            await explain(endpoint)
        say()
        say("Before: the old endpoint stats (percentiles over 24 h of attempts)")
        old_results: list[tuple[str, float, float]] = []

        direct = await asyncpg.connect(os.environ["RELAY_DATABASE_URL"], command_timeout=None)

        async def old_stats() -> Any:
            row = await direct.fetchrow(OLD_ATTEMPTS, endpoint)
            await direct.fetchrow(OLD_OPEN, endpoint)
            return row

        old = await timed("endpoint stats (old query)", old_stats, max(3, args.repeat // 8),
                          old_results)
        say()
        say("After: reads from the rollups")
        results: list[tuple[str, float, float]] = []
        new = await timed("endpoint stats", lambda: endpoint_stats(endpoint), args.repeat,
                          results)
        health = await timed(f"health of all {args.endpoints} endpoints", endpoints_health,
                             args.repeat, results)
        for metric in METRICS:
            for label, params in (("1 h, step 60", {"since": "-3600", "step": "60"}),
                                  ("24 h, step 60" + API_ONLY,
                                   {"since": "-86400", "step": "60"}),
                                  ("24 h, step 3600", {"since": "-86400", "step": "3600"})):
                async def read(metric: str = metric, params: dict[str, str] = params) -> Any:
                    now = utcnow()
                    since = now + timedelta(seconds=float(params["since"]))
                    query = parse_series_query({"metric": metric, "step": params["step"],
                                                "since": since.isoformat()}, now)
                    async with pooled() as connection:
                        return await read_series(connection, query)

                await timed(f"series {metric}, {label}", read, args.repeat, results)
        live = await timed("live stats message", live_stats, args.repeat, results)
        say()
        say(f"old answer: attempts {old['attempts']:,}, failures {old['failures']:,}, "
            f"p50/p95/p99 {[round(v, 1) for v in old['latency']]} ms")
        say(f"new answer: attempts {new['attempts']:,}, failures {new['failures']:,}, "
            f"p50/p95/p99 {[new['p50_ms'], new['p95_ms'], new['p99_ms']]} ms, "
            f"pending {new['pending']:,} (capped), in flight {new['in_flight']}")
        say(f"live: {live}")
        new = await endpoint_stats(endpoint)  # the window moves: count at the same moment
        since, _ = last_day(utcnow())
        async with pooled() as connection:
            exact = await connection.fetchrow(
                "SELECT count(*) AS attempts, count(*) FILTER (WHERE status_code NOT BETWEEN"
                " 200 AND 299) AS failures FROM attempt WHERE endpoint_id = $1"
                " AND started_at >= $2", endpoint, since)
        if (exact["attempts"], exact["failures"]) != (new["attempts"], new["failures"]):
            problems.append(f"rollups say {new['attempts']}/{new['failures']} attempts/failures,"
                            f" the attempts {exact['attempts']}/{exact['failures']}")
        if len(health) != args.endpoints:
            problems.append(f"health listed {len(health)} endpoints, not {args.endpoints}")
        say()
        old_median = old_results[0][1]
        say(f"Endpoint stats: {old_median:,.1f} ms before, {results[0][1]:.2f} ms after "
            f"({old_median / results[0][1]:,.0f}x)")
        dashboard = [r for r in results if not r[0].endswith(API_ONLY)]
        slow = [label for label, median, _ in dashboard if median >= LIMIT_MS]
        if slow:
            problems.append(f"{len(slow)} reads at or over {LIMIT_MS:g} ms: {', '.join(slow)}")
        worst = max(dashboard, key=lambda r: r[1])
        say(f"Slowest of the dashboard's reads: {worst[0]} (median {worst[1]:.2f} ms, p95 "
            f"{worst[2]:.2f} ms); limit {LIMIT_MS:g} ms")
        api_only = max(results, key=lambda r: r[1])
        if api_only not in dashboard:
            say(f"Slowest read the API allows but the dashboard does not make: {api_only[0]} "
                f"(median {api_only[1]:.2f} ms)")
    finally:
        await stop_database()
    for problem in problems:
        say(f"PROBLEM: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10_000_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--explain", action="store_true",
                        help="print the plans of the rollup reads first")
    args = parser.parse_args()
    pg = Postgres()
    data_dir = Path(tempfile.mkdtemp(prefix="relay-bench-stats-"))
    try:
        pg.start()
        env = bench_env(pg.url, data_dir)
        manage(env, "migrate")
        os.environ.update(env)
        os.chdir(ROOT)
        return asyncio.run(measure(args))
    except BenchError as exc:
        say(f"bench failed: {exc}")
        return 1
    finally:
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())

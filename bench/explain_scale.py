"""EXPLAIN (ANALYZE, BUFFERS) of Relay's hot and periodic statements on a big database.

    .venv/bin/python bench/explain_scale.py URL [--repeat 3]

URL is a migrated database filled by bench/_scale_seed.py (10 M events, 30 M deliveries,
30 M attempts by default there). Every statement runs inside a transaction that is
rolled back, so the data stays as seeded; each is run `--repeat` times and the best
execution time is kept (the first run warms the cache). Prints one line per statement:
its name, the best time in ms, the buffers it touched and the top plan nodes; statements
rewritten for this audit appear twice, `(before)` with the old text and `(after)`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
os.environ.setdefault("RELAY_SECRET_KEY", "explain-scale")
os.environ.setdefault("RELAY_DATABASE_URL", "postgresql://unused@127.0.0.1/unused")

import django

django.setup()

from dispatch import alerts, cli, queue, rollups, routing, settle  # noqa: E402
from hooks import store  # noqa: E402
from kernel import partitions  # noqa: E402
from relay import retention  # noqa: E402

NOW = datetime.now(UTC)
ENDPOINT = "ep_3"


def _events_list(where: str, order: str = "id DESC") -> str:
    return ("SELECT id, source_slug, event_type, received_at, size FROM event"
            f" {where} ORDER BY {order} LIMIT 51")


async def _sample(connection: asyncpg.Connection) -> dict[str, Any]:
    old = NOW - timedelta(days=20)
    event_id = await connection.fetchval(
        "SELECT id FROM event WHERE id >= $1 ORDER BY id LIMIT 1", partitions.id_bound("evt", old))
    delivery_id = await connection.fetchval(
        "SELECT id FROM delivery WHERE event_id = $1 ORDER BY id LIMIT 1", event_id)
    due = await connection.fetchval(
        "SELECT count(*) FROM delivery WHERE status IN ('pending', 'retrying')"
        " AND next_attempt_at <= now()")
    frontier = await connection.fetchval(
        "SELECT next_attempt_at FROM delivery WHERE status IN ('pending', 'retrying')"
        " AND next_attempt_at <= now() ORDER BY next_attempt_at OFFSET $1 LIMIT 1", due // 2)
    window = store.partitions_covering(await partitions.day_partitions(connection, "event"),
                                       NOW - timedelta(days=1))
    return {"event": event_id, "delivery": delivery_id, "old": old, "frontier": frontier,
            "dedup_window": window}


def statements(sample: dict[str, Any]) -> list[tuple[str, str, list[Any], str | None]]:
    """(name, SQL, parameters, SQL to run first in the same transaction)."""
    old: datetime = sample["old"]
    since, until = old - timedelta(hours=1), old
    fresh = [f"evt_{'z' * 10}{n:016d}" for n in range(3)]
    make_unrouted = ("INSERT INTO event (id, source_slug, received_at, method, query, headers,"
                     " content_type, size, body) SELECT i, 's', now(), 'POST', '', '{}', '', 0,"
                     " ''::bytea FROM unnest(ARRAY['" + "','".join(fresh) + "']) AS i;"
                     " INSERT INTO event_unrouted (event_id, source_slug, received_at)"
                     " SELECT i, 's', now() FROM unnest(ARRAY['" + "','".join(fresh) + "']) AS i")
    cutoff = NOW - timedelta(days=10)
    return [
        ("routing: read unrouted", routing._TAKE_UNROUTED, [500, False], None),
        ("routing: mark, insert, hand over", routing._ROUTE,
         [fresh, [f"dlv_{'z' * 10}{n:016d}" for n in range(3)], fresh, [ENDPOINT] * 3,
          [1, 2, 0], "audit", 15.0, 30.0, []], make_unrouted),
        ("claim", queue._CLAIM, ["audit", 100, [], 15.0, 5.0, 30.0, None], None),
        ("claim from a frontier (half the due deliveries before it)", queue._CLAIM,
         ["audit", 100, [], 15.0, 5.0, 30.0, sample["frontier"]], None),
        ("claim within allowances", queue._CLAIM_WITHIN_ALLOWANCES,
         ["audit", 100, [], 15.0, 5.0, 200, [ENDPOINT], [5], 0, 30.0, None], None),
        ("cli: pull one (relay listen)", cli._CLAIM_ONE, ["audit", ENDPOINT, 30.0], None),
        ("alerts: failure rate (rollups, 5 min)", rollups.SUMS_BY_ENDPOINT,
         alerts_window(), None),
        ("settle: insert attempts", settle._INSERT_ATTEMPTS,
         [[f"att_{'z' * 10}{n:016d}" for n in range(100)], [sample["delivery"]] * 100,
          [ENDPOINT] * 100, [1] * 100, [NOW] * 100, [1.0] * 100, [200] * 100, [None] * 100,
          [None] * 100, ["{}"] * 100, ["{}"] * 100, [""] * 100], None),
        ("settle: update deliveries", settle._UPDATE_DELIVERIES,
         ["seed", [sample["delivery"]], ["succeeded"], [1], [None], [200], [None], [NOW]],
         None),
        ("lease recovery (sweep)", queue._SWEEP, [1000], None),
        ("circuit opened: park a chunk", queue._PARK_CHUNK, [ENDPOINT, 1000, ""], None),
        ("circuit upkeep: probe candidates", queue._PROBE_CANDIDATE, [30.0, 15.0, 5.0], None),
        ("circuit upkeep: endpoints to unpark", queue._STRANDED, [], None),
        ("endpoint auto-disable: park", queue._PARK, [ENDPOINT], None),
        ("endpoint enable: unpark", queue._UNPARK, [ENDPOINT], None),
        ("endpoint delete: cancel", queue._CANCEL, [ENDPOINT], None),
        ("recover: pick failed", queue._PICK_FAILED,
         [ENDPOINT, NOW - timedelta(days=3), NOW, 1000], None),
        ("recover: requeue", queue._REQUEUE, [[sample["delivery"]]], None),
        ("retention: expired events batch", retention._SELECT_EXPIRED_EVENTS,
         [cutoff, datetime(1970, 1, 1, tzinfo=UTC), "", 5000], None),
        ("retention: events with a delivery in flight (one day)", retention._ACTIVE_EVENTS,
         [partitions.day_bounds("event", old.date())[1]], None),
        ("events list", _events_list(""), [], None),
        ("events list, page 2 (cursor)", _events_list("WHERE id < $1"), [sample["event"]],
         None),
        ("events list by source", _events_list("WHERE source_slug = $1"), ["source1"], None),
        ("events list by type", _events_list("WHERE event_type = $1"), ["order.3"], None),
        ("events list since/until (before)",
         _events_list("WHERE received_at >= $1 AND received_at < $2"), [since, until], None),
        ("events list since/until (after)",
         _events_list("WHERE received_at >= $1 AND received_at < $2 AND id >= $3 AND id < $4"),
         [since, until, *_id_window("evt", since, until)], None),
        ("event detail", "SELECT * FROM event WHERE id = $1", [sample["event"]], None),
        ("event detail: its deliveries (before)",
         "SELECT * FROM delivery WHERE event_id = $1 ORDER BY id", [sample["event"]], None),
        ("event detail: its deliveries (after)",
         "SELECT * FROM delivery WHERE event_id = $1 AND id >= $2 ORDER BY id",
         [sample["event"], partitions.ids_after("dlv", sample["event"])], None),
        ("deliveries list", "SELECT * FROM delivery ORDER BY id DESC LIMIT 51", [], None),
        ("deliveries list by endpoint",
         "SELECT * FROM delivery WHERE endpoint_id = $1 ORDER BY id DESC LIMIT 51", [ENDPOINT],
         None),
        ("deliveries list by status (failed)",
         "SELECT * FROM delivery WHERE status = $1 ORDER BY id DESC LIMIT 51", ["failed"], None),
        ("deliveries list by event (before)",
         "SELECT * FROM delivery WHERE event_id = $1 ORDER BY id DESC LIMIT 51",
         [sample["event"]], None),
        ("deliveries list by event (after)",
         "SELECT * FROM delivery WHERE event_id = $1 AND id >= $2 ORDER BY id DESC LIMIT 51",
         [sample["event"], partitions.ids_after("dlv", sample["event"])], None),
        ("delivery detail", "SELECT * FROM delivery WHERE id = $1", [sample["delivery"]], None),
        ("delivery detail: its attempts (before)",
         "SELECT * FROM attempt WHERE delivery_id = $1 ORDER BY number, id",
         [sample["delivery"]], None),
        ("delivery detail: its attempts (after)",
         "SELECT * FROM attempt WHERE delivery_id = $1 AND id >= $2 ORDER BY number, id",
         [sample["delivery"], partitions.ids_after("att", sample["delivery"])], None),
        ("refused request insert (count cap)",
         "INSERT INTO rejected_request (id, source_id, received_at, reason, headers,"
         " body_preview, size) SELECT $1, $2::text, $3::timestamptz, $4, $5::jsonb, $6, $7"
         " WHERE (SELECT count(*) FROM rejected_request WHERE source_id = $2::text"
         " AND received_at > $3::timestamptz - interval '1 minute') < $8",
         [partitions.id_bound("rej", NOW), "src_1", NOW, "bad", "{}", b"", 0, 10], None),
        ("dedup lookup (ingest, hooks/store.py)", store.find_originals_sql(sample["dedup_window"]),
         [[0], ["src_1"], ["k12345"], [NOW - timedelta(days=1)], [None], [None]], None),
    ]


def alerts_window() -> list[datetime]:
    return rollups.window_bounds(*alerts.failure_window(NOW, 300))


def _id_window(prefix: str, since: datetime, until: datetime) -> tuple[str | None, str | None]:
    return partitions.ids_between(prefix, since, until)


GENERIC = {"routing: read unrouted", "routing: mark and insert", "claim",
           "claim from a frontier (half the due deliveries before it)",
           "claim within allowances", "settle: insert attempts", "settle: update deliveries",
           "circuit upkeep: probe candidates"}
"""Statements Relay runs on their generic plans (dispatch.queue.GENERIC_PLAN)."""
GENERIC_LABEL = " (generic plan, as run)"


def expanded(items: list[tuple[str, str, list[Any], str | None]],
             ) -> list[tuple[str, str, list[Any], str | None]]:
    """Each statement Relay runs on its generic plan twice: the plan made for these values
    (what it ran before) and the generic plan it runs now."""
    out = []
    for name, sql, params, before in items:
        if name in GENERIC:
            out.append((name + " (custom plan, before)", sql, params, before))
            out.append((name + GENERIC_LABEL, sql, params, before))
        else:
            out.append((name, sql, params, before))
    return out


def literal(value: Any) -> str:
    """`value` as SQL text, for EXECUTE (which takes no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'::bytea"
    if isinstance(value, list):
        kinds = {type(item) for item in value if item is not None}
        if kinds <= {str}:  # an untyped literal: EXECUTE gives it the parameter's type
            items = ["NULL" if item is None else
                     '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
                     for item in value]
            return "'{" + ",".join(items).replace("'", "''") + "}'"
        cast = {bool: "bool[]", int: "int[]", float: "float8[]", datetime: "timestamptz[]",
                bytes: "bytea[]"}.get(next(iter(kinds)), "text[]")
        return f"ARRAY[{', '.join(literal(item) for item in value)}]::{cast}"
    return "'" + str(value).replace("'", "''") + "'"


async def explain_generic(connection: asyncpg.Connection, sql: str, params: list[Any],
                          settings: str = queue.GENERIC_PLAN) -> str:
    """EXPLAIN ANALYZE of the generic plan (EXPLAIN with bound values always plans for
    them): PREPARE, force the generic plan (with the claims' other settings for a claim,
    queue.IN_DUE_ORDER) for this transaction, EXECUTE with literals."""
    name = f"audit_{next(_NAMES)}"
    await connection.execute(f"PREPARE {name} AS {sql}")
    await connection.execute(settings)
    values = ", ".join(literal(value) for value in params)
    raw = await connection.fetchval(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}({values})")
    await connection.execute(f"DEALLOCATE {name}")
    return raw


_NAMES = itertools.count()


def summary(plan: dict[str, Any]) -> str:
    nodes: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        if depth > 3 or len(nodes) > 6:
            return
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" {node['Index Name']}"
        if node["Node Type"] in ("Append", "Merge Append"):
            label += f"[{len(node.get('Plans', []))}]"
        nodes.append(label)
        for child in node.get("Plans", [])[:2]:
            walk(child, depth + 1)

    walk(plan["Plan"], 0)
    return " > ".join(nodes)


def _buffers(plan: dict[str, Any]) -> int:
    node = plan["Plan"]
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


async def run(url: str, repeat: int) -> None:
    connection = await asyncpg.connect(url, command_timeout=None)
    try:
        sample = await _sample(connection)
        sizes = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM event) AS events, (SELECT count(*) FROM delivery)"
            " AS deliveries, (SELECT count(*) FROM attempt) AS attempts")
        print(f"database: {sizes['events']:,} events, {sizes['deliveries']:,} deliveries, "
              f"{sizes['attempts']:,} attempts", flush=True)
        for name, sql, params, before in expanded(statements(sample)):
            generic = name.endswith(GENERIC_LABEL)
            best: tuple[float, int, str] | None = None
            for _ in range(repeat):
                transaction = connection.transaction()
                await transaction.start()
                try:
                    if before:
                        await connection.execute(before)
                    if generic:
                        raw = await explain_generic(
                            connection, sql, params,
                            queue.IN_DUE_ORDER if name.startswith("claim") else
                            queue.GENERIC_PLAN)
                    else:
                        raw = await connection.fetchval(
                            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
                finally:
                    await transaction.rollback()
                plan = json.loads(raw)[0]
                took = float(plan["Execution Time"]) + float(plan.get("Planning Time", 0))
                if best is None or took < best[0]:
                    best = (took, _buffers(plan), summary(plan))
            assert best is not None
            print(f"{name:45s} {best[0]:9.2f} ms {best[1]:8,} buffers  {best[2]}", flush=True)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.repeat))


if __name__ == "__main__":
    main()

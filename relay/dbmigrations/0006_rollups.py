"""Rolled-up aggregates for stats, health and charts (owned by `dispatch`).

`endpoint_rollup`: per endpoint, per minute (`span` 60) and per hour (`span` 3600), the
attempts started in that period, their successes and failures, the sum of their durations
and a latency histogram (counts per fixed log-spaced bucket, see dispatch/latency.py).
Written by the settle batches. `source_rollup`: events per source and period, written by
the router as it routes them. Both are read and written with SQL only (no Tortoise model:
their keys are composite), and pruned by the daily purge.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0005_partitions')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                "CREATE TABLE endpoint_rollup ("
                " endpoint_id varchar(40) NOT NULL,"
                " span integer NOT NULL,"
                " start_at timestamptz NOT NULL,"
                " attempts integer NOT NULL,"
                " successes integer NOT NULL,"
                " failures integer NOT NULL,"
                " duration_ms_sum double precision NOT NULL,"
                " latency integer[] NOT NULL,"
                " PRIMARY KEY (endpoint_id, span, start_at)"
                ") WITH (fillfactor = 70)",
                "CREATE INDEX endpoint_rollup_start_idx ON endpoint_rollup (span, start_at)",
                "CREATE TABLE source_rollup ("
                " source varchar(100) NOT NULL,"
                " span integer NOT NULL,"
                " start_at timestamptz NOT NULL,"
                " events integer NOT NULL,"
                " PRIMARY KEY (source, span, start_at)"
                ") WITH (fillfactor = 70)",
                "CREATE INDEX source_rollup_start_idx ON source_rollup (span, start_at)",
            ],
            reverse_sql=[
                "DROP TABLE IF EXISTS source_rollup",
                "DROP TABLE IF EXISTS endpoint_rollup",
            ],
        ),
    ]

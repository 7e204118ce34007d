"""Deliveries of `cli` endpoints wait parked (next_attempt_at NULL) instead of due, so
the dispatchers' claims never walk past a backlog only a `relay listen` can take."""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0009_alerts')]

    initial = False

    operations = [
        ops.RunSQL(
            "UPDATE delivery SET next_attempt_at = NULL"
            " WHERE status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL"
            " AND endpoint_id IN (SELECT id FROM endpoint WHERE kind = 'cli')",
            reverse_sql="UPDATE delivery SET next_attempt_at = now()"
            " WHERE status IN ('pending', 'retrying') AND next_attempt_at IS NULL"
            " AND endpoint_id IN (SELECT id FROM endpoint WHERE kind = 'cli' AND enabled)",
        ),
    ]

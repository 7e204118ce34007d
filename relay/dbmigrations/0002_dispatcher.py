"""dispatch: the dispatcher's columns and partial indexes on delivery and endpoint (claims,
leases, circuit breaker, routing). The index predicates name delivery states as
dispatch/states.py defines them (WAITING, ACTIVE).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('relay', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Delivery',
            name='retry_base',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='Endpoint',
            name='circuit_probe_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # Partial indexes that keep the dispatcher's hot statements proportional to the
        # work they find, not to the size of the tables.
        ops.RunSQL(
            [
                "CREATE INDEX event_unrouted_idx ON event (id) WHERE routed_at IS NULL",
                "CREATE INDEX delivery_due_idx ON delivery (next_attempt_at)"
                " WHERE status IN ('pending', 'retrying')",
                "CREATE INDEX delivery_lease_idx ON delivery (lease_expires_at)"
                " WHERE status = 'delivering'",
                "CREATE INDEX delivery_open_endpoint_idx ON delivery (endpoint_id, status)"
                " WHERE status IN ('pending', 'retrying', 'delivering')",
                "CREATE INDEX delivery_failed_endpoint_idx ON delivery (endpoint_id, created_at)"
                " WHERE status = 'failed'",
            ],
            reverse_sql=[
                "DROP INDEX IF EXISTS event_unrouted_idx",
                "DROP INDEX IF EXISTS delivery_due_idx",
                "DROP INDEX IF EXISTS delivery_lease_idx",
                "DROP INDEX IF EXISTS delivery_open_endpoint_idx",
                "DROP INDEX IF EXISTS delivery_failed_endpoint_idx",
            ],
        ),
    ]

"""An experiment released by mistake (narrower indexes over deliveries in flight); 0015
puts the indexes back as they were."""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0013_circuit_parking')]
    initial = False
    operations = [
        ops.RunSQL(
            [
                "DROP INDEX delivery_open_endpoint_idx",
                "CREATE INDEX delivery_open_endpoint_idx ON delivery (endpoint_id, status) WHERE status IN ('pending', 'retrying')",
                "DROP INDEX delivery_open_event_idx",
                "CREATE INDEX delivery_open_event_idx ON delivery (event_id) WHERE status IN ('pending', 'retrying')",
                "DROP INDEX delivery_status_idx",
                "CREATE INDEX delivery_status_idx ON delivery (status, id) WHERE status <> 'delivering'",
            ],
            reverse_sql=[],
        ),
    ]

"""Drop `delivery_lease_idx`: the lease sweep finds the deliveries in flight through
`delivery_status_idx` (its `delivering` range holds exactly them, a few hundred rows at
most), so the partial index on `lease_expires_at` only cost every claim, and every
delivery routing inserts already leased, one more index entry.

Dropping an index takes a short exclusive lock on `delivery` and rewrites nothing.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0015_in_flight_indexes')]
    initial = False
    operations = [
        ops.RunSQL(
            ["DROP INDEX IF EXISTS delivery_lease_idx"],
            reverse_sql=[
                "CREATE INDEX delivery_lease_idx ON delivery (lease_expires_at)"
                " WHERE status = 'delivering'",
            ],
        ),
    ]

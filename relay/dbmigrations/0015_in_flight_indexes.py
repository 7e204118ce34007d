"""Puts back the indexes that 0014 narrowed.

0014 was an experiment that should not have been released: it left `delivering` rows out
of `delivery_open_endpoint_idx`, `delivery_open_event_idx` and `delivery_status_idx`, to
save a claim three index entries. It saved nothing measurable, and the statements that
ask for every delivery in flight (retention's "events a day's drop must keep", an
endpoint's delete cancelling its deliveries) could no longer use those partial indexes:
they read every delivery of the range instead. The definitions here are the ones of 0002,
0005 and 0001.

Each index is rebuilt: a scan of `delivery` under a lock that holds its writes back
while it runs, as 0014 did. Written out rather than taken from dispatch.states, so that
the migration stays what it was whatever those names become.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0014_exp')]
    initial = False
    operations = [
        ops.RunSQL(
            [
                "DROP INDEX IF EXISTS delivery_open_endpoint_idx",
                "CREATE INDEX delivery_open_endpoint_idx ON delivery (endpoint_id, status)"
                " WHERE status IN ('pending', 'retrying', 'delivering')",
                "DROP INDEX IF EXISTS delivery_open_event_idx",
                "CREATE INDEX delivery_open_event_idx ON delivery (event_id)"
                " WHERE status IN ('pending', 'retrying', 'delivering')",
                "DROP INDEX IF EXISTS delivery_status_idx",
                "CREATE INDEX delivery_status_idx ON delivery (status, id)",
            ],
            reverse_sql=[],
        ),
    ]

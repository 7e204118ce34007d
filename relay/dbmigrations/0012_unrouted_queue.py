"""Events waiting to be routed are listed in a narrow table, `event_unrouted`, instead of
being marked in `event` itself.

Marking an event routed (`UPDATE event SET routed_at = now()`) wrote every event a second
time: a new version of the whole row, body included, and new entries in every index of
the table. Ingest now inserts one small row per event into `event_unrouted` in the same
statement as the event; routing deletes it in the statement that inserts the deliveries.
The queue holds only what is not routed yet (usually nothing), and the event row is
written once.

The events not routed yet are copied into the queue, then `event_unrouted_idx` and the
`routed_at` column go (the copy reads that index: it costs the unrouted events, not
all of them). Going back sets `routed_at` on every event not in the queue, which rewrites
the whole table: meant for development databases.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0011_drop_attempt_endpoint_idx')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                "CREATE TABLE event_unrouted ("
                " event_id varchar(40) PRIMARY KEY,"
                " event_type varchar(255),"
                " source_slug varchar(100),"
                " received_at timestamptz NOT NULL)",
                "COMMENT ON TABLE event_unrouted IS 'Events stored and not routed yet: one"
                " row each, inserted with the event, deleted when its deliveries are made.'",
                "INSERT INTO event_unrouted (event_id, event_type, source_slug, received_at)"
                " SELECT id, event_type, source_slug, received_at FROM event"
                " WHERE routed_at IS NULL",
                "DROP INDEX IF EXISTS event_unrouted_idx",
            ],
            reverse_sql=[
                "CREATE INDEX event_unrouted_idx ON event (id) WHERE routed_at IS NULL",
                "UPDATE event SET routed_at = received_at"
                " WHERE id NOT IN (SELECT event_id FROM event_unrouted)",
                "DROP TABLE event_unrouted",
            ],
        ),
        ops.RemoveField(model_name='Event', name='routed_at'),
    ]

"""While an endpoint's circuit is open, its waiting deliveries are parked (no due time)
instead of pushed back to the end of the cool-down: a failed probe used to push back the
whole backlog again, every cool-down (a million waiting deliveries: a million row updates
every 30 seconds). `circuit_parked` says the backlog must be made due once the circuit
closes. Nothing is moved here: backlogs held the old way are parked when they next come due.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0012_unrouted_queue')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Endpoint',
            name='circuit_parked',
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]

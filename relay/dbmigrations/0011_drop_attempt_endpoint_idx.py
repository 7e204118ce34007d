"""Drop `attempt_endpoint_idx`: endpoint statistics and the failure-rate alert read the
per-minute rollups, so no statement reads attempts by endpoint and time any more, and every
attempt written paid for the index."""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('relay', '0010_park_cli')]

    initial = False

    operations = [
        ops.RemoveIndex(model_name='Attempt', name='attempt_endpoint_idx'),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index
import functools
from json import dumps, loads
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [('relay', '0008_hardening')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Alert',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('name', fields.CharField(max_length=200)),
                ('enabled', fields.BooleanField(default=True)),
                ('conditions', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('notify', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('cooldown_seconds', fields.IntField(default=900)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alert', 'app': 'relay', 'pk_attr': 'id', 'table_description': "A rule that notifies endpoints when Relay's own health needs a human."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlertState',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=200)),
                ('alert_id', fields.CharField(max_length=40)),
                ('condition', fields.IntField()),
                ('subject', fields.CharField(max_length=120)),
                ('firing', fields.BooleanField(default=False)),
                ('last_fired_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_event_id', fields.CharField(null=True, max_length=40)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alert_state', 'app': 'relay', 'indexes': [Index(fields=['alert_id', 'firing'], name='alert_state_alert_idx')], 'pk_attr': 'key', 'table_description': 'Whether one alert condition is firing for one subject (an endpoint or a source).'},
            bases=['Model'],
        ),
    ]

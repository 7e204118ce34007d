"""The first schema, for every app (Tortoise app label `relay`, shared by all of them).

Who owns what: kernel/models.py `ApiToken` (api_token); hooks/models.py `Source`,
`Event`, `RejectedRequest` (source, event, rejected_request); dispatch/models.py
`Endpoint`, `Delivery`, `Attempt` (endpoint, delivery, attempt).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='ApiToken',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('name', fields.CharField(max_length=200)),
                ('scope', fields.CharField(max_length=10)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_token', 'app': 'relay', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Attempt',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('delivery_id', fields.CharField(max_length=40)),
                ('endpoint_id', fields.CharField(max_length=40)),
                ('number', fields.IntField()),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('duration_ms', fields.FloatField()),
                ('status_code', fields.IntField(null=True)),
                ('error', fields.CharField(null=True, max_length=20)),
                ('error_detail', fields.TextField(null=True, unique=False)),
                ('request_headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('response_headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('response_body', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'attempt', 'app': 'relay', 'indexes': [Index(fields=['delivery_id', 'number'], name='attempt_delivery_idx'), Index(fields=['endpoint_id', 'started_at'], name='attempt_endpoint_idx')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Delivery',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('event_id', fields.CharField(max_length=40)),
                ('endpoint_id', fields.CharField(max_length=40)),
                ('status', fields.CharField(default='pending', max_length=12)),
                ('attempts_count', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_owner', fields.CharField(null=True, max_length=64)),
                ('lease_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_status_code', fields.IntField(null=True)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'delivery', 'app': 'relay', 'indexes': [Index(fields=['event_id'], name='delivery_event_idx'), Index(fields=['endpoint_id', 'id'], name='delivery_endpoint_idx'), Index(fields=['status', 'id'], name='delivery_status_idx')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Endpoint',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('url', fields.TextField(unique=False)),
                ('description', fields.TextField(default='', unique=False)),
                ('enabled', fields.BooleanField(default=True)),
                ('disabled_reason', fields.TextField(null=True, unique=False)),
                ('secret_encrypted', fields.TextField(unique=False)),
                ('previous_secret_encrypted', fields.TextField(null=True, unique=False)),
                ('previous_secret_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('event_types', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('sources', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('filter_rule', fields.JSONField(source_field='filter', null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('timeout_seconds', fields.FloatField(null=True)),
                ('max_in_flight', fields.IntField(default=10)),
                ('rate_limit_per_second', fields.FloatField(null=True)),
                ('retry_schedule', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('circuit_opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('consecutive_failures', fields.IntField(default=0)),
                ('first_failure_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_success_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'endpoint', 'app': 'relay', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Event',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('source_id', fields.CharField(null=True, max_length=40)),
                ('source_slug', fields.CharField(null=True, max_length=100)),
                ('event_type', fields.CharField(null=True, max_length=255)),
                ('dedup_key', fields.CharField(null=True, max_length=255)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('method', fields.CharField(default='POST', max_length=10)),
                ('query', fields.TextField(default='', unique=False)),
                ('headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('content_type', fields.CharField(default='', max_length=255)),
                ('size', fields.IntField(default=0)),
                ('body', fields.BinaryField()),
                ('routed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'event', 'app': 'relay', 'indexes': [Index(fields=['source_id', 'dedup_key', 'received_at'], name='event_dedup_idx'), Index(fields=['source_slug', 'id'], name='event_source_idx'), Index(fields=['event_type', 'id'], name='event_type_idx'), Index(fields=['received_at'], name='event_received_idx')], 'pk_attr': 'id', 'table_description': 'One received webhook, or one published through the API. Never modified after insert'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RejectedRequest',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('source_id', fields.CharField(max_length=40)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('reason', fields.TextField(unique=False)),
                ('headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('body_preview', fields.BinaryField()),
                ('size', fields.IntField(default=0)),
            ],
            options={'table': 'rejected_request', 'app': 'relay', 'indexes': [Index(fields=['source_id', 'received_at'], name='rejected_source_idx')], 'pk_attr': 'id', 'table_description': 'A refused ingest request, kept 7 days so an admin can see why a provider fails.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Source',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('slug', fields.CharField(unique=True, max_length=100)),
                ('name', fields.CharField(default='', max_length=200)),
                ('enabled', fields.BooleanField(default=True)),
                ('max_body_bytes', fields.IntField(null=True)),
                ('verification', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('secret_encrypted', fields.TextField(null=True, unique=False)),
                ('dedup', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('event_type_rule', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'source', 'app': 'relay', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]

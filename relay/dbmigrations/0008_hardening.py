"""Hardening: endpoint headers encrypted at rest, dashboard sessions that log-out ends."""

import json

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


async def encrypt_endpoint_headers(apps, schema_editor) -> None:
    """Every endpoint's plain `headers` into `headers_encrypted` (Fernet, RELAY_SECRET_KEY)."""
    from relay.crypto import encrypt_secret

    client = schema_editor.client
    _, rows = await client.execute_query(
        "SELECT id, headers::text AS headers FROM endpoint"
        " WHERE headers IS NOT NULL AND headers::text NOT IN ('{}', 'null')")
    for row in rows:
        headers = json.loads(row["headers"])
        if not headers:
            continue
        stored = encrypt_secret(json.dumps(headers, separators=(",", ":")))
        await client.execute_query(
            "UPDATE endpoint SET headers_encrypted = $1 WHERE id = $2", [stored, row["id"]])


async def decrypt_endpoint_headers(apps, schema_editor) -> None:
    from relay.crypto import decrypt_secret

    client = schema_editor.client
    _, rows = await client.execute_query(
        "SELECT id, headers_encrypted FROM endpoint WHERE headers_encrypted IS NOT NULL")
    for row in rows:
        plain = decrypt_secret(row["headers_encrypted"])
        await client.execute_query(
            "UPDATE endpoint SET headers = $1::jsonb WHERE id = $2", [plain, row["id"]])


class Migration(migrations.Migration):
    dependencies = [('relay', '0006_rollups')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Endpoint',
            name='headers_encrypted',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.RunPython(encrypt_endpoint_headers, decrypt_endpoint_headers),
        ops.RemoveField(model_name='Endpoint', name='headers'),
        ops.CreateModel(
            name='DashboardSession',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True,
                                        max_length=64)),
                ('token_id', fields.CharField(max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False,
                                                  auto_now_add=False)),
            ],
            options={'table': 'dashboard_session', 'app': 'relay', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]

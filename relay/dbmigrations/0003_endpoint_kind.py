"""dispatch: an endpoint's kind (webhook by default) and its message template."""
from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [('relay', '0002_dispatcher')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Endpoint',
            name='kind',
            field=fields.CharField(default='webhook', db_default='webhook', max_length=16),
        ),
        ops.AddField(
            model_name='Endpoint',
            name='template',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]

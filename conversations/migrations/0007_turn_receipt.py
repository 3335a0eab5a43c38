"""A stored chat turn's receipt (``TurnReceipt``): its answer's id, written in the same
statement as the turn's rows and usage, so that a second store of the turn fails on it and
counts nothing twice — also when its conversation or bot was deleted and no message was
written. A new, empty table (no lock on any other); a BRIN index on ``created_at`` for the
drain's pruning."""

import django.contrib.postgres.indexes
import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0006_message_injection_flagged"),
        ("tenants", "0007_tenant_quota_changed_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="TurnReceipt",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField()),
                (
                    "tenant",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={
                "base_manager_name": "all_tenants",
                "default_manager_name": "all_tenants",
                "indexes": [
                    django.contrib.postgres.indexes.BrinIndex(
                        fields=["created_at"], name="turn_receipt_created"
                    )
                ],
            },
            managers=[
                ("all_tenants", django.db.models.manager.Manager()),
            ],
        ),
    ]

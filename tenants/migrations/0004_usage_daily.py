"""The daily usage roll-up moves from ``conversations`` to ``tenants`` (with
``conversations.0005``): ingestion, in ``knowledge``, which may not import ``conversations``,
counts its embedding tokens there too. State only: the table keeps its name and its rows, so
nothing is locked or copied, and a process still running the code before the move writes to
the same table."""

import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_audit_tenant_actor"),
        # the table is made there, in conversations.0001
        ("conversations", "0004_citations_of_deleted_documents"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UsageDaily",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("day", models.DateField()),
                        ("bot_id", models.UUIDField(blank=True, null=True)),
                        ("api_key_id", models.UUIDField(blank=True, null=True)),
                        ("requests", models.PositiveIntegerField(default=0)),
                        ("prompt_tokens", models.BigIntegerField(default=0)),
                        ("completion_tokens", models.BigIntegerField(default=0)),
                        ("embedding_tokens", models.BigIntegerField(default=0)),
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
                        "db_table": "conversations_usagedaily",
                        "ordering": ["-day"],
                        "default_manager_name": "all_tenants",
                        "base_manager_name": "all_tenants",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("tenant", "day", "bot_id", "api_key_id"),
                                name="usage_daily_unique",
                                nulls_distinct=False,
                            )
                        ],
                    },
                    managers=[
                        ("all_tenants", django.db.models.manager.Manager()),
                    ],
                ),
            ],
            database_operations=[],
        ),
    ]

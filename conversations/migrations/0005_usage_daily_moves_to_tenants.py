"""The daily usage roll-up is ``tenants.UsageDaily`` now (``tenants.0004``); its table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_citations_of_deleted_documents"),
        ("tenants", "0004_usage_daily"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="UsageDaily")],
            database_operations=[],
        ),
    ]

"""An index on documents by ``(created_at DESC, id DESC)`` across tenants: the order of the staff
admin's document list (the ingestion monitor: newest first, the id breaking ties) and of its tag
filter's newest documents, for a superuser, who sees every tenant's. The only index with that
order had the tenant first (``document_tenant_created``), so a superuser's page sorted every
document of every tenant to show 50 (165-235 ms at 200,000: docs/BENCHMARKS.md).

Built CONCURRENTLY, as 0017's index: uploads and ingestion go on while it builds. It may run
twice: a build cut short leaves an INVALID index of that name, which running migrate again
drops and builds anew."""

from django.db import migrations, models

TABLE = "knowledge_document"
INDEX = "document_created"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("knowledge", "0018_document_indexed_title"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    [
                        f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}",
                        f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} (created_at DESC, id DESC)",
                    ],
                    [f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"],
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name="document",
                    index=models.Index(fields=["-created_at", "-id"], name=INDEX),
                ),
            ],
        ),
    ]

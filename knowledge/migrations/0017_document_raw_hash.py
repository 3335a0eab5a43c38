"""``Document.raw_hash``: the SHA-256 of an upload's bytes as they came, and one document per
those bytes in a dataset.

Safe on a big table: the column is nullable with no default, a catalogue change with no rewrite
(existing documents keep null: the original bytes of one stored re-encoded are not kept), added
in a statement that waits at most a second for its lock at a time (knowledge 0013's
``briefly``), so a long transaction on documents does not queue every upload behind the ALTER.
The unique index is built CONCURRENTLY: uploads and ingestion go on while it builds. Each step
may run twice: a build cut short leaves an INVALID index, which running migrate again drops and
builds anew."""

import importlib
from typing import Any

from django.db import migrations, models

cjk = importlib.import_module("knowledge.migrations.0013_chunk_cjk_bigrams")

TABLE = "knowledge_document"
INDEX = "document_raw_hash_unique_per_dataset"


def add_column(apps: Any, schema_editor: Any) -> None:
    cjk.briefly(schema_editor, f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS raw_hash varchar(64) NULL")


def drop_column(apps: Any, schema_editor: Any) -> None:
    cjk.briefly(schema_editor, f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS raw_hash")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("knowledge", "0016_chunk_search_vector_headings"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(add_column, drop_column),
                migrations.RunSQL(
                    [
                        f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}",
                        f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} "
                        f"ON {TABLE} (dataset_id, raw_hash) WHERE raw_hash IS NOT NULL",
                    ],
                    [f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"],
                ),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="document",
                    name="raw_hash",
                    field=models.CharField(
                        blank=True,
                        editable=False,
                        help_text="SHA-256 of the uploaded bytes, hex.",
                        max_length=64,
                        null=True,
                    ),
                ),
                migrations.AddConstraint(
                    model_name="document",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("raw_hash__isnull", False)),
                        fields=("dataset", "raw_hash"),
                        name=INDEX,
                    ),
                ),
            ],
        ),
    ]

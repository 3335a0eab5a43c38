"""``Document.indexed_title``: the title a document's searched chunks were made with, which a
hit shows over their text (a record replaced with a new title showed it over its old text until
the new run's chunks were stored, and for good if that run failed).

Safe on a big table, as 0017's column: nullable with no default (no rewrite), added in a
statement that waits at most a second for its lock at a time. Existing documents keep null
(hits show their title, as before) until their next run; nothing is backfilled."""

import importlib
from typing import Any

from django.db import migrations, models

cjk = importlib.import_module("knowledge.migrations.0013_chunk_cjk_bigrams")

TABLE = "knowledge_document"


def add_column(apps: Any, schema_editor: Any) -> None:
    cjk.briefly(
        schema_editor, f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS indexed_title varchar(500) NULL"
    )


def drop_column(apps: Any, schema_editor: Any) -> None:
    cjk.briefly(schema_editor, f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS indexed_title")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("knowledge", "0017_document_raw_hash"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_column, drop_column)],
            state_operations=[
                migrations.AddField(
                    model_name="document",
                    name="indexed_title",
                    field=models.CharField(blank=True, editable=False, max_length=500, null=True),
                ),
            ],
        ),
    ]

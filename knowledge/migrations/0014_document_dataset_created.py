"""An index for a dataset's document list (newest first). Built concurrently: documents stay
writable (uploads, ingestion) while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("knowledge", "0013_chunk_cjk_bigrams"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="document",
            index=models.Index(
                fields=["tenant", "dataset", "-created_at"], name="document_dataset_created"
            ),
        ),
    ]

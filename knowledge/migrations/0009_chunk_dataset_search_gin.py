"""The full-text GIN index leads with the dataset (btree_gin), so that a term's postings are
intersected with the searched datasets' inside the index. Built concurrently: chunks stay
writable while it builds, and retrieval keeps the old index until the new one is valid."""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    BtreeGinExtension,
    RemoveIndexConcurrently,
)
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("knowledge", "0008_termstat"),
    ]

    operations = [
        BtreeGinExtension(),
        AddIndexConcurrently(
            model_name="chunk",
            index=GinIndex(fields=["dataset", "search_vector"], name="chunk_dataset_search_gin"),
        ),
        RemoveIndexConcurrently(model_name="chunk", name="chunk_search_vector_gin"),
    ]

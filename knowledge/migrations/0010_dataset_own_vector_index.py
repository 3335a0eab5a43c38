"""A dataset's own partial ANN index is recorded on the dataset (knowledge.vector_index.maintain
builds it; retrieval reads the flag with the bot's datasets). A constant default: no rewrite."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("knowledge", "0009_chunk_dataset_search_gin"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="own_vector_index",
            field=models.BooleanField(
                default=False,
                editable=False,
                help_text="Searched through an ANN index of its own (large datasets; built by celery beat).",
            ),
        ),
    ]

"""Extended statistics on (tenant_id, dataset_id): a dataset belongs to one tenant, and without
this PostgreSQL multiplies the two selectivities and underestimates a tenant's chunks about
20-fold (measured on the 200k-chunk benchmark), which skews the choice between an exact scan
and the vector index for retrieval."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0004_chunk_embedding_model")]

    operations = [
        migrations.RunSQL(
            "CREATE STATISTICS IF NOT EXISTS chunk_tenant_dataset_stats "
            "(dependencies, ndistinct, mcv) ON tenant_id, dataset_id FROM knowledge_chunk",
            "DROP STATISTICS IF EXISTS chunk_tenant_dataset_stats",
        ),
    ]

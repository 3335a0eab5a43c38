"""Keep chunk rows inline: with the default toast_tuple_target (~2 kB) a 384-d embedding
(1.5 kB) plus text and tsvector pushes each row over the threshold and PostgreSQL moves the
embedding out of line, so every exact-scan distance and every hit's similarity costs a TOAST
lookup (the 200k-chunk benchmark's TOAST table was twice its heap). Rows up to ~8 kB now stay
in the heap. Existing rows move on their next update (reingest) or with
``VACUUM FULL knowledge_chunk``."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0005_chunk_tenant_dataset_statistics")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk SET (toast_tuple_target = 8160)",
            "ALTER TABLE knowledge_chunk RESET (toast_tuple_target)",
        ),
    ]

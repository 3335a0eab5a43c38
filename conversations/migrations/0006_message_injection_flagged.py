"""An answer's injection verdict, decided once when it is stored (``Message.injection_flagged``).

A nullable column with no default: PostgreSQL adds it without rewriting the table (a catalog
change under a brief exclusive lock). The answers stored before it keep null and are checked
when a later turn carries them, as all were: a backfill here would run the document rules over
every stored answer inside ``migrate`` (0.6 ms for an answer of 700 characters, more for longer
ones: ten minutes and more a million answers, docs/BENCHMARKS.md), and only the conversations
still continued need it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_usage_daily_moves_to_tenants"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="injection_flagged",
            field=models.BooleanField(blank=True, null=True),
        ),
    ]

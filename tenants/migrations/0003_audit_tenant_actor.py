"""An index for the audit log's ``?actor_id=`` filter. Built concurrently: the audit log stays
writable (every admin write appends to it) while the index builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tenants", "0002_staff_membership"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditlog",
            index=models.Index(
                fields=["tenant", "actor_id", "-created_at"], name="audit_tenant_actor"
            ),
        ),
    ]

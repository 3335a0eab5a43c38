"""A tenant's quota changed by any writer moves its ``updated_at``.

The re-queue of documents refused for the quota (``knowledge.intake.requeue_over_quota``, run
by celery beat) takes "the tenant changed since the document failed" from
``tenants_tenant.updated_at``. ``Tenant.save`` moves it; a queryset ``.update()``, a
``bulk_update``, or an UPDATE in psql did not, and the documents waiting for the quota they
raised waited for the month to turn. A trigger moves it for all of them, when the quota (or
whether the tenant is active: its documents are not re-queued while it is not) changes and the
statement left ``updated_at`` as it was: the time the row is changed, not the transaction's
start (a transaction that began before a document failed would have stamped an earlier time).
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION tenants_tenant_quota_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.monthly_token_quota IS DISTINCT FROM OLD.monthly_token_quota
        OR NEW.is_active IS DISTINCT FROM OLD.is_active)
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER tenants_tenant_quota_changed BEFORE UPDATE ON tenants_tenant
    FOR EACH ROW EXECUTE FUNCTION tenants_tenant_quota_changed();
"""

DROP = """
DROP TRIGGER IF EXISTS tenants_tenant_quota_changed ON tenants_tenant;
DROP FUNCTION IF EXISTS tenants_tenant_quota_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("tenants", "0006_rate_budget_of_earlier_keys")]

    operations = [migrations.RunSQL(FUNCTION, DROP)]

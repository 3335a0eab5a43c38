from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.utils import InternalError, ProgrammingError

from bots.models import Bot
from tenants.errors import TenantScopeError
from tenants.models import ApiKey, AppendOnlyError, AuditLog
from tenants.tests.factories import ApiKeyFactory, AuditLogFactory, TenantFactory

pytestmark = pytest.mark.django_db


def test_unscoped_query_on_tenant_owned_model_fails_closed():
    with pytest.raises(TenantScopeError):
        list(Bot.objects.all())
    with pytest.raises(TenantScopeError):
        ApiKey.objects.filter(role="admin")
    with pytest.raises(TenantScopeError):
        AuditLog.objects.all()


def test_for_tenant_returns_only_that_tenants_rows():
    mine, other = ApiKeyFactory(), ApiKeyFactory()
    assert list(ApiKey.objects.for_tenant(mine.tenant)) == [mine]
    assert list(ApiKey.objects.for_tenant(other.tenant.pk)) == [other]


def test_for_tenant_without_a_tenant_is_an_error_not_everything():
    ApiKeyFactory()
    with pytest.raises(TenantScopeError):
        ApiKey.objects.for_tenant(None)


def test_api_key_hash_is_unique_across_tenants():
    first = ApiKeyFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKeyFactory(key_hash=first.key_hash)


def test_api_key_prefix_is_unique():
    first = ApiKeyFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKeyFactory(prefix=first.prefix)


def test_api_key_role_is_admin_or_chat_in_the_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKeyFactory(role="owner")


def test_audit_log_refuses_update_and_delete_in_python():
    entry = AuditLogFactory()
    entry.action = "tampered"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditLog.objects.for_tenant(entry.tenant).update(action="tampered")
    with pytest.raises(AppendOnlyError):
        AuditLog.all_tenants.filter(pk=entry.pk).delete()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tenants_auditlog SET action = 'tampered' WHERE id = %s",
        "DELETE FROM tenants_auditlog WHERE id = %s",
    ],
)
def test_audit_log_trigger_refuses_raw_sql_update_and_delete(statement):
    entry = AuditLogFactory()
    with (
        pytest.raises((ProgrammingError, InternalError)),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [entry.pk])
    assert AuditLog.objects.for_tenant(entry.tenant).get().action == "test.action"


def test_tenant_with_audit_history_cannot_be_deleted():
    entry = AuditLogFactory()
    with pytest.raises(Exception, match="protected"):
        entry.tenant.delete()


def test_tenant_slugs_are_unique():
    TenantFactory(slug="acme")
    with pytest.raises(IntegrityError), transaction.atomic():
        TenantFactory(slug="acme")

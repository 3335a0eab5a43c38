from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.utils import InternalError, ProgrammingError

from bots.models import Bot
from conversations.models import Message
from conversations.tests.factories import MessageFactory
from tenants.errors import TenantScopeError
from tenants.models import ActorType, ApiKey, AppendOnlyError, AuditLog
from tenants.tests.factories import ApiKeyFactory, AuditLogFactory, TenantFactory
from tests.world import build_tenant

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


def test_a_new_rows_updated_at_is_its_created_at_and_moves_only_when_it_is_changed():
    """A bot just created through the API showed an updated_at some microseconds after its
    created_at (Django read the clock once per field), as if it had been changed since."""
    side = build_tenant("alpha")
    client = side.client()
    created = {
        "scopes": client.post("/v1/scopes", {"name": "s"}, format="json").json(),
        "datasets": client.post("/v1/datasets", {"name": "d"}, format="json").json(),
        "bots": client.post("/v1/bots", {"name": "b"}, format="json").json(),
    }
    for kind, body in created.items():
        assert body["updated_at"] == body["created_at"], kind
    rows = MessageFactory.build_batch(2, tenant=side.tenant, conversation=side.conversation)
    for row in Message.objects.for_tenant(side.tenant).bulk_create(rows):  # the turns' path
        assert row.updated_at == row.created_at

    bot = created["bots"]
    same = client.patch(f"/v1/bots/{bot['id']}", {"name": "b"}, format="json").json()
    assert same["updated_at"] == bot["updated_at"]
    renamed = client.patch(f"/v1/bots/{bot['id']}", {"name": "c"}, format="json").json()
    assert renamed["updated_at"] > renamed["created_at"]


def test_a_time_given_to_a_new_row_is_its_created_at():
    """Django's auto_now_add put the clock over it, silently: lists paged across ties of
    created_at, or a message of a day's last millisecond, were tested with rows stamped now."""
    moment = dt.datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
    message = MessageFactory(created_at=moment)
    (bulk,) = Message.all_tenants.bulk_create(
        [Message(tenant=message.tenant, conversation=message.conversation, role="user",
                 content="Hi.", created_at=moment)]
    )  # fmt: skip
    AuditLog.all_tenants.bulk_create(
        [AuditLog(tenant=message.tenant, created_at=moment, actor_type=ActorType.SYSTEM)]
    )
    for row in (message, bulk):
        stored = Message.all_tenants.get(pk=row.pk)
        assert stored.created_at == stored.updated_at == moment  # as given, not changed since
    assert AuditLog.objects.for_tenant(message.tenant).get().created_at == moment
    now = MessageFactory(conversation=message.conversation, tenant=message.tenant)
    assert now.created_at > moment  # none given: the clock, as before

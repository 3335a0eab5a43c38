from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from tenants.keys import key_matches
from tenants.models import ApiKey, AuditLog, Role, Tenant
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_create_tenant_prints_contract_json_with_a_working_admin_key():
    payload = run("create_tenant", "acme", "--name", "Acme Inc.")

    assert set(payload) == {"tenant_id", "api_key"}
    tenant = Tenant.objects.get(pk=payload["tenant_id"])
    assert (tenant.slug, tenant.name) == ("acme", "Acme Inc.")
    key = ApiKey.objects.for_tenant(tenant).get()
    assert key.role == Role.ADMIN
    assert key_matches(payload["api_key"], key.key_hash)
    actions = set(AuditLog.objects.for_tenant(tenant).values_list("action", flat=True))
    assert actions == {"tenant.create", "api_key.create"}


def test_create_tenant_twice_fails_with_a_readable_error_and_writes_nothing():
    run("create_tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme")
    assert Tenant.objects.filter(slug="acme").count() == 1


def test_create_tenant_rejects_an_invalid_slug():
    with pytest.raises(CommandError, match="slug"):
        run("create_tenant", "not a slug")
    assert not Tenant.objects.exists()


def test_create_api_key_prints_id_and_key_for_the_role_asked():
    tenant = TenantFactory(slug="acme")
    payload = run("create_api_key", "--tenant", "acme", "--role", "chat", "--name", "widget")

    assert set(payload) == {"id", "api_key"}
    key = ApiKey.objects.for_tenant(tenant).get(pk=payload["id"])
    assert (key.role, key.name) == ("chat", "widget")
    assert key_matches(payload["api_key"], key.key_hash)


def test_create_api_key_for_unknown_tenant_fails():
    with pytest.raises(CommandError, match="not found"):
        run("create_api_key", "--tenant", "nobody", "--role", "admin")


def test_create_api_key_refuses_an_unknown_role():
    TenantFactory(slug="acme")
    with pytest.raises(CommandError):
        run("create_api_key", "--tenant", "acme", "--role", "owner")

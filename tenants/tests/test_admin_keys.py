"""API keys in the admin: the secret is shown once and works; revoking is audited."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiKey, AuditLog
from tenants.tests.factories import ApiKeyFactory, TenantFactory
from tests.staff import staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return TenantFactory(slug="acme")


def test_creating_a_key_shows_its_secret_once_and_the_secret_works(tenant):
    staff = staff_client(tenant, "alice")
    response = staff.post(
        "/admin/tenants/apikey/add/", {"tenant": str(tenant.pk), "name": "ops", "role": "admin"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'id="api-key-secret"[^>]*>([^<]+)<', response.content.decode()).group(1)
    key = ApiKey.objects.for_tenant(tenant).get(name="ops")
    assert key.prefix in secret and key.key_hash not in secret
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/v1/bots").status_code == 200
    # Never again: the change page and the list do not carry it.
    assert secret not in staff.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert secret not in staff.get("/admin/tenants/apikey/").content.decode()
    entry = AuditLog.objects.for_tenant(tenant).get(action="api_key.create")
    assert (entry.actor_type, entry.actor_label) == ("staff", "alice")
    assert secret not in str(entry.changes)


def test_revoking_keys_in_the_admin_stops_them_at_once_and_is_audited(tenant):
    key = ApiKeyFactory(tenant=tenant, role="admin")
    staff = staff_client(tenant, "alice")
    response = staff.post(
        "/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]}
    )
    assert response.status_code == 302
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    assert api.get("/v1/bots").status_code == 401
    entry = AuditLog.objects.for_tenant(tenant).get(action="api_key.revoke")
    assert (entry.actor_type, entry.target_id) == ("staff", str(key.pk))


def test_audit_log_entries_cannot_be_changed_or_deleted_in_the_admin(tenant):
    key = ApiKeyFactory(tenant=tenant)
    staff = staff_client(tenant, "alice", superuser=True)
    staff.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    entry = AuditLog.objects.for_tenant(tenant).get(action="api_key.revoke")

    page = staff.get(f"/admin/tenants/auditlog/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff.get(f"/admin/tenants/auditlog/{entry.pk}/delete/").status_code == 403
    assert b"delete_selected" not in staff.get("/admin/tenants/auditlog/").content
    assert AuditLog.objects.for_tenant(tenant).filter(pk=entry.pk).exists()


def key_form(tenant, **overrides) -> dict:
    form = {"tenant": str(tenant.pk), "name": "ops", "role": "chat",
            "rate_limit_per_minute": "", "expires_at_0": "", "expires_at_1": ""}  # fmt: skip
    return {**form, **overrides}


def test_a_key_takes_the_apis_bounds_on_its_rate_limit_and_expiry(tenant):
    """The admin let a key have 1,000,001 requests a minute (the API's maximum is 1,000,000)
    and an expiry in the past."""
    staff = staff_client(tenant, "alice")
    past = (timezone.now() - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    refused = {
        "rate_limit_per_minute": {"rate_limit_per_minute": "1000001"},
        "expires_at": {"expires_at_0": past, "expires_at_1": "12:00:00"},
    }
    for field, values in refused.items():
        response = staff.post("/admin/tenants/apikey/add/", key_form(tenant, **values))
        assert response.status_code == 200, field
        assert list(response.context["adminform"].form.errors) == [field]
    assert not ApiKey.objects.for_tenant(tenant).exists()

    key = ApiKeyFactory(tenant=tenant, expires_at=timezone.now() - dt.timedelta(hours=1))
    change = f"/admin/tenants/apikey/{key.pk}/change/"
    expired = timezone.localtime(key.expires_at)
    unchanged = {
        "name": "renamed",
        "rate_limit_per_minute": "1000000",
        "expires_at_0": expired.strftime("%Y-%m-%d"),
        "expires_at_1": expired.strftime("%H:%M:%S"),
    }  # (the time as the page shows it: to the second)
    assert staff.post(change, unchanged).status_code == 302  # an expiry left as it was is fine
    key.refresh_from_db()
    assert (key.name, key.rate_limit_per_minute) == ("renamed", 1_000_000)
    # A day before the expiry as it stands (not "yesterday": within an hour after midnight UTC
    # the key's expiry, an hour ago, is yesterday, and the form was unchanged).
    earlier = {**unchanged, "expires_at_0": (expired - dt.timedelta(days=1)).strftime("%Y-%m-%d")}
    assert list(staff.post(change, earlier).context["adminform"].form.errors) == ["expires_at"]


def test_a_revoked_key_cannot_be_changed_in_the_admin(tenant):
    """The API refuses to change a revoked key (409); the admin renamed it, gave it another
    rate limit or expiry, and audited that as api_key.update."""
    key = ApiKeyFactory(tenant=tenant, name="old", revoked_at=timezone.now())
    staff = staff_client(tenant, "alice")
    change = f"/admin/tenants/apikey/{key.pk}/change/"
    page = staff.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content

    response = staff.post(change, key_form(tenant, name="new", rate_limit_per_minute="7"))
    assert response.status_code == 403
    key.refresh_from_db()
    assert (key.name, key.rate_limit_per_minute) == ("old", None)
    assert not AuditLog.objects.for_tenant(tenant).filter(action="api_key.update").exists()


def test_a_limit_set_in_the_admin_gives_a_shared_key_a_budget_of_its_own(tenant):
    """A key made by a bot-limited key shares that key's rate limit (``rate_budget``); staff
    raising its limit in the admin left it in the shared budget, so the raise gave it nothing.
    A limit staff set is the key's own, audited as the API's change is."""
    maker = ApiKeyFactory(tenant=tenant, role="admin", rate_limit_per_minute=3)
    made = ApiKeyFactory(tenant=tenant, role="chat", rate_limit_per_minute=3, rate_budget=maker)
    staff = staff_client(tenant, "alice")
    change = f"/admin/tenants/apikey/{made.pk}/change/"
    renamed = key_form(tenant, name="renamed", rate_limit_per_minute="3")
    assert staff.post(change, renamed).status_code == 302
    made.refresh_from_db()
    assert (made.name, made.rate_budget_id) == ("renamed", maker.pk)  # a rename keeps it shared

    raised = {**renamed, "rate_limit_per_minute": "100"}
    assert staff.post(change, raised).status_code == 302
    made.refresh_from_db()
    assert (made.rate_limit_per_minute, made.rate_budget_id) == (100, None)
    entry = AuditLog.objects.for_tenant(tenant).filter(action="api_key.update").first()
    assert (entry.actor_type, entry.target_id) == ("staff", str(made.pk))
    assert entry.changes == {"rate_limit_per_minute": 100, "rate_limit_shared": False}
    assert "rate limit shared" in staff.get(change).content.decode().lower()

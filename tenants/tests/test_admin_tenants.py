"""Tenants and staff memberships in the admin (superusers only): audited, with the defaults of
the command line."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from tenants.models import AuditLog, StaffMembership, Tenant
from tenants.tests.factories import TenantFactory
from tests.staff import staff_client

pytestmark = pytest.mark.django_db


def test_a_membership_given_moved_and_taken_away_is_in_the_tenants_audit_logs():
    """Giving a person the run of a tenant's admin (where they can issue admin keys) left no
    entry in any audit log."""
    acme, other = TenantFactory(slug="acme"), TenantFactory(slug="other")
    root = staff_client(other, "root", superuser=True)
    carol = get_user_model().objects.create_user("carol", is_staff=True)

    def entries(tenant):
        rows = AuditLog.objects.for_tenant(tenant).filter(
            action__startswith="staff_membership", actor_type="staff"  # (not root's own)
        )
        return [(e.action, e.actor_label, e.changes) for e in rows.order_by("created_at")]

    add = root.post(
        "/admin/tenants/staffmembership/add/", {"user": carol.pk, "tenant": str(acme.pk)}
    )
    assert add.status_code == 302
    membership = StaffMembership.objects.get(user=carol)
    assert entries(acme) == [("staff_membership.create", "root", {"user": "carol"})]
    assert AuditLog.objects.for_tenant(acme).get(actor_type="staff").target_id == str(membership.pk)

    change = f"/admin/tenants/staffmembership/{membership.pk}/change/"
    unchanged = root.post(change, {"user": carol.pk, "tenant": str(acme.pk)})
    assert unchanged.status_code == 302 and len(entries(acme)) == 1

    moved = root.post(change, {"user": carol.pk, "tenant": str(other.pk)})
    assert moved.status_code == 302
    assert entries(acme)[1:] == [("staff_membership.delete", "root", {"user": "carol"})]
    assert entries(other) == [("staff_membership.create", "root", {"user": "carol"})]

    deleted = root.post(
        "/admin/tenants/staffmembership/",
        {"action": "delete_selected", "_selected_action": [membership.pk], "post": "yes"},
    )
    assert deleted.status_code == 302
    assert not StaffMembership.objects.filter(user=carol).exists()
    assert entries(other)[1:] == [("staff_membership.delete", "root", {"user": "carol"})]


@override_settings(TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE=600)
def test_a_tenant_added_in_the_admin_starts_with_the_configured_default_rate_limit():
    """The add form offered the model's 60, whatever TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE said
    (manage.py create_tenant takes the setting)."""
    root = staff_client(TenantFactory(slug="home"), "root", superuser=True)
    form = root.get("/admin/tenants/tenant/add/").context["adminform"].form
    offered = form["default_rate_limit_per_minute"].value()
    assert offered == 600
    added = root.post(
        "/admin/tenants/tenant/add/",
        {"slug": "new", "name": "New", "is_active": "on", "default_rate_limit_per_minute": offered},
    )
    assert added.status_code == 302
    tenant = Tenant.objects.get(slug="new")
    assert tenant.default_rate_limit_per_minute == 600
    assert AuditLog.objects.for_tenant(tenant).get().action == "tenant.create"

"""Staff memberships (superusers only) are in the audit log of the tenant they open."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tenants.models import AuditLog, StaffMembership
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
        rows = AuditLog.objects.for_tenant(tenant).filter(action__startswith="staff_membership")
        return [(e.action, e.actor_label, e.changes) for e in rows.order_by("created_at")]

    add = root.post(
        "/admin/tenants/staffmembership/add/", {"user": carol.pk, "tenant": str(acme.pk)}
    )
    assert add.status_code == 302
    membership = StaffMembership.objects.get(user=carol)
    assert entries(acme) == [("staff_membership.create", "root", {"user": "carol"})]
    assert AuditLog.objects.for_tenant(acme).get().target_id == str(membership.pk)

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

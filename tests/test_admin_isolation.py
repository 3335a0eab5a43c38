"""Tenant scoping in the admin: a tenant's staff user sees and reaches only that tenant's
objects through every admin page; another tenant's id in a URL is a 404."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from bots.models import Bot
from knowledge.models import Chunk, Document
from knowledge.tests.factories import DocumentFactory
from tenants.models import AuditLog
from tests.staff import PASSWORD, sign_in, staff_client

pytestmark = pytest.mark.django_db

# (admin URL part, world attribute) for every registered tenant-owned model.
MODELS = [
    ("tenants/tenant", "tenant"),
    ("tenants/apikey", "admin_key"),
    ("bots/scope", "scope"),
    ("bots/bot", "bot"),
    ("knowledge/dataset", "dataset"),
    ("knowledge/document", "document"),
    ("conversations/conversation", "conversation"),
    ("conversations/message", "message"),
]


def chunk_of(side) -> Chunk:
    return Chunk.all_tenants.filter(tenant=side.tenant).get()


def audit_of(side) -> AuditLog:
    return AuditLog.objects.for_tenant(side.tenant).earliest("created_at")


def every_object(side) -> list[tuple[str, object]]:
    objects = [(url, getattr(side, attr)) for url, attr in MODELS]
    return [*objects, ("knowledge/chunk", chunk_of(side)), ("tenants/auditlog", audit_of(side))]


@pytest.fixture
def alpha_staff(world) -> Client:
    return staff_client(world.a.tenant)


def test_every_list_shows_only_the_staff_users_tenant(world, alpha_staff):
    for (url, mine), (_, theirs) in zip(every_object(world.a), every_object(world.b), strict=True):
        response = alpha_staff.get(f"/admin/{url}/")
        assert response.status_code == 200, url
        assert f"/admin/{url}/{mine.pk}/change/".encode() in response.content, url
        assert str(theirs.pk).encode() not in response.content, url


@pytest.mark.parametrize("page", ["change", "delete", "history"])
def test_another_tenants_object_in_the_url_is_404(world, alpha_staff, page):
    for url, theirs in every_object(world.b):
        response = alpha_staff.get(f"/admin/{url}/{theirs.pk}/{page}/")
        assert response.status_code == 404, (url, response.status_code)


def test_change_pages_link_related_objects_of_the_tenant(world, alpha_staff):
    document = alpha_staff.get(f"/admin/knowledge/document/{world.a.document.pk}/change/")
    chunks = f"/admin/knowledge/chunk/?document__id__exact={world.a.document.pk}"
    assert chunks.encode() in document.content
    listing = alpha_staff.get(chunks)
    assert listing.status_code == 200
    assert str(chunk_of(world.a).pk).encode() in listing.content
    dataset = alpha_staff.get(f"/admin/knowledge/dataset/{world.a.dataset.pk}/change/").content
    assert f"/admin/bots/bot/{world.a.bot.pk}/change/".encode() in dataset
    bot = alpha_staff.get(f"/admin/bots/bot/{world.a.bot.pk}/change/").content
    assert f"/admin/knowledge/dataset/{world.a.dataset.pk}/change/".encode() in bot


def test_a_malformed_or_missing_id_is_the_same_404(world, alpha_staff):
    assert alpha_staff.get("/admin/bots/bot/not-a-uuid/change/").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert alpha_staff.get(f"/admin/bots/bot/{missing}/change/").status_code == 404


def test_upload_page_of_another_tenants_dataset_is_404(world, alpha_staff):
    ours = alpha_staff.get(f"/admin/knowledge/dataset/{world.a.dataset.pk}/upload/")
    theirs = alpha_staff.get(f"/admin/knowledge/dataset/{world.b.dataset.pk}/upload/")
    assert (ours.status_code, theirs.status_code) == (200, 404)


def test_foreign_key_choices_offer_only_the_tenants_objects(world, alpha_staff):
    form = alpha_staff.get("/admin/bots/bot/add/").content
    assert str(world.a.scope.pk).encode() in form
    assert str(world.b.scope.pk).encode() not in form
    assert str(world.b.tenant.pk).encode() not in form


def test_list_filters_offer_only_the_tenants_objects(world, alpha_staff):
    second = DocumentFactory(tenant=world.a.tenant)  # a filter needs two choices to show
    page = alpha_staff.get("/admin/knowledge/document/").content
    assert f"dataset__id__exact={world.a.dataset.pk}".encode() in page
    assert f"dataset__id__exact={second.dataset_id}".encode() in page
    assert f"dataset__id__exact={world.b.dataset.pk}".encode() not in page


def test_an_action_on_another_tenants_ids_touches_nothing(world, alpha_staff):
    response = alpha_staff.post(
        "/admin/knowledge/document/",
        {"action": "delete_selected", "_selected_action": [str(world.b.document.pk)],
         "post": "yes"},
    )  # fmt: skip
    assert response.status_code in (200, 302)
    assert Document.all_tenants.filter(pk=world.b.document.pk).exists()


def test_a_crafted_post_cannot_put_an_object_in_another_tenant(world, alpha_staff):
    response = alpha_staff.post(
        "/admin/bots/bot/add/",
        {"tenant": str(world.b.tenant.pk), "name": "sneaky", "scope": str(world.b.scope.pk),
         "temperature": "0.2", "max_output_tokens": "100", "top_k": "5", "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 200  # the form again, with errors
    assert not Bot.all_tenants.filter(name="sneaky").exists()


def test_a_superuser_sees_every_tenant(world):
    client = staff_client(world.a.tenant, "root", superuser=True)
    page = client.get("/admin/bots/bot/").content
    assert str(world.a.bot.pk).encode() in page and str(world.b.bot.pk).encode() in page
    assert client.get(f"/admin/bots/bot/{world.b.bot.pk}/change/").status_code == 200


def test_a_superuser_cannot_mix_tenants_in_one_object(world):
    client = staff_client(world.a.tenant, "root", superuser=True)
    response = client.post(
        "/admin/bots/bot/add/",
        {"tenant": str(world.a.tenant.pk), "name": "mixed", "scope": str(world.b.scope.pk),
         "temperature": "0.2", "max_output_tokens": "100", "top_k": "5", "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert b"belongs to another tenant" in response.content
    assert not Bot.all_tenants.filter(name="mixed").exists()


def test_a_staff_user_of_no_tenant_sees_nothing(world):
    user = get_user_model().objects.create_user("nomad", password=PASSWORD, is_staff=True)
    device = TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    client = Client()
    assert sign_in(client, user, device).status_code == 302
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/bots/" not in index.content
    for url, obj in every_object(world.a):
        assert client.get(f"/admin/{url}/").status_code == 403, url
        assert client.get(f"/admin/{url}/{obj.pk}/change/").status_code in (403, 404), url


def test_a_deactivated_tenants_staff_user_sees_nothing_from_the_next_request_on(world):
    """Deactivating a tenant made its keys and JWTs fail, but its staff users, signed in or
    signing in, still listed and changed everything, created API keys and uploaded documents."""
    client = staff_client(world.a.tenant, "alice")
    assert client.get("/admin/bots/bot/").status_code == 200
    world.a.tenant.is_active = False
    world.a.tenant.save(update_fields=["is_active", "updated_at"])

    assert b"/admin/bots/" not in client.get("/admin/").content
    for url, obj in every_object(world.a):
        assert client.get(f"/admin/{url}/").status_code == 403, url
        assert client.get(f"/admin/{url}/{obj.pk}/change/").status_code in (403, 404), url
    keys = AuditLog.objects.for_tenant(world.a.tenant).count()
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(world.a.tenant.pk), "name": "late", "role": "admin"},
    )
    assert response.status_code == 403
    assert AuditLog.objects.for_tenant(world.a.tenant).count() == keys
    # A superuser still sees it, to look into it or to activate it again.
    root = staff_client(world.b.tenant, "root", superuser=True)
    assert root.get(f"/admin/bots/bot/{world.a.bot.pk}/change/").status_code == 200
    world.a.tenant.is_active = True
    world.a.tenant.save(update_fields=["is_active", "updated_at"])
    assert client.get("/admin/bots/bot/").status_code == 200

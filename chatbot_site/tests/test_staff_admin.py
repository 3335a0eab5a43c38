"""What every admin list shares (chatbot_site.staff_admin): its filters, actions and the lookups
a URL may ask for."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from bots.models import Bot
from bots.tests.factories import BotFactory
from knowledge.models import Document
from knowledge.tests.factories import DatasetFactory
from tenants.models import ApiKey, AuditLog
from tests.staff import change_form_data, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha_staff(world) -> Client:
    return staff_client(world.a.tenant)


def unused_dataset(world) -> str:
    return str(DatasetFactory.create(tenant=world.a.tenant).pk)


def idle_bot(world) -> str:
    return str(BotFactory.create(tenant=world.a.tenant, scope=world.a.scope).pk)


def no_scope_in_use(world) -> str:
    Bot.objects.for_tenant(world.a.tenant).update(scope=None)
    return str(world.a.scope.pk)


def untagged(world) -> str:
    Document.objects.for_tenant(world.a.tenant).update(tags=[])
    return "faq"


# (list, parameter, a value that matches none of world.a's rows although it is the tenant's)
FILTERS = [
    ("knowledge/document", "dataset__id__exact", unused_dataset),
    ("knowledge/chunk", "dataset__id__exact", unused_dataset),
    ("conversations/conversation", "bot__id__exact", idle_bot),
    ("bots/bot", "scope__id__exact", no_scope_in_use),
    ("knowledge/document", "tag", untagged),
]


@pytest.mark.parametrize(("url", "parameter", "value_of"), FILTERS)
def test_a_filter_in_the_url_is_applied_even_when_it_offers_one_choice_or_none(
    world, alpha_staff, url, parameter, value_of
):
    """Django drops a filter with too few choices to show after taking its parameter out of
    the query: the monitor of a dataset without documents listed the other dataset's."""
    value = value_of(world)
    response = alpha_staff.get(f"/admin/{url}/?{parameter}={value}")
    assert response.status_code == 200, response.content[:300]
    assert list(response.context["cl"].result_list) == []
    assert response.context["cl"].has_active_filters


@pytest.mark.parametrize("selected", ["notauuid", "", "1.5"])
@pytest.mark.parametrize(
    ("url", "action", "superuser"),
    [
        ("knowledge/document", "reingest", False),
        ("knowledge/document", "delete_selected", False),
        ("tenants/apikey", "revoke", False),
        ("tenants/staffmembership", "delete_selected", True),
        ("auth/user", "delete_selected", True),
    ],
)
def test_an_action_on_ids_that_are_not_ids_changes_nothing(world, url, action, superuser, selected):
    """``queryset.filter(pk__in=["notauuid"])`` was a 500 (ValidationError)."""
    client = staff_client(world.a.tenant, superuser=superuser)
    response = client.post(
        f"/admin/{url}/",
        {"action": action, "_selected_action": selected, "index": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Items must be selected in order to perform actions on them." in (
        response.content.decode()
    )
    assert Document.objects.for_tenant(world.a.tenant).get().status == "ready"
    assert ApiKey.objects.for_tenant(world.a.tenant).filter(revoked_at__isnull=True).count() == 2
    assert get_user_model().objects.count() == 1


# (list, query, as a superuser): lookups no filter of the list offers, and values of offered
# ones that Python cannot take (a year past datetime's range in the date hierarchy). Each was a
# 500.
REFUSED = [
    ("knowledge/dataset", "name__regex=(", False),
    ("knowledge/dataset", "tags=x", False),
    ("knowledge/dataset", "tags__contains=x", False),
    ("tenants/apikey", "bot_ids__contains=zz", False),
    ("tenants/auditlog", "ip=notanip", False),
    ("knowledge/document", "created_at__year=0", False),
    ("knowledge/document", "created_at__year=-1", False),
    ("bots/bot", "created_at__year=99999", False),
    ("knowledge/dataset", "created_at__year=99999999999999999999", False),
    ("tenants/auditlog", "created_at__year=99999999999999999999", False),
    ("conversations/message", "created_at__year=2026&created_at__day=99999999999999999999", False),
    ("tenants/staffmembership", "created_at__year=0", True),
    ("auth/user", "date_joined__year=0", True),
]


@pytest.mark.parametrize(("url", "query", "superuser"), REFUSED)
def test_a_lookup_the_list_does_not_offer_or_cannot_take_is_refused(world, url, query, superuser):
    client = staff_client(world.a.tenant, superuser=superuser)
    response = client.get(f"/admin/{url}/?{query}")
    refused = response.status_code == 400
    incorrect = response.status_code == 302 and response["Location"] == f"/admin/{url}/?e=1"
    assert refused or incorrect, (response.status_code, response.content[:300])


def test_every_filter_and_date_link_of_every_list_still_opens(world):
    client = staff_client(world.a.tenant, superuser=True)
    for model, model_admin in site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        cl = client.get(url).context["cl"]
        queries = {
            choice["query_string"] for spec in cl.filter_specs for choice in spec.choices(cl)
        }
        if field := model_admin.date_hierarchy:
            queries.add(f"?{field}__year=2026&{field}__month=12&{field}__day=6")
        queries |= {f"?{lookup}={world.a.document.pk}" for lookup in model_admin.linked_lookups}
        for query in queries:
            response = client.get(f"{url}{query}")
            assert response.status_code == 200, (url, query, response.get("Location"))


@pytest.mark.parametrize(
    ("url", "attr", "superuser"),
    [
        ("bots/scope", "scope", False),
        ("bots/bot", "bot", False),
        ("knowledge/dataset", "dataset", False),
        ("tenants/apikey", "admin_key", False),
        ("tenants/tenant", "tenant", True),
    ],
)
def test_a_change_page_saved_as_it_was_writes_nothing(world, url, attr, superuser):
    """Saving a change page without changing anything wrote an audit entry with no changes
    and moved the object's updated_at; a PATCH that changes nothing does neither."""
    obj = getattr(world.a, attr)
    staff = staff_client(world.a.tenant, "root" if superuser else "alice", superuser=superuser)
    change = f"/admin/{url}/{obj.pk}/change/"
    entries = AuditLog.objects.for_tenant(world.a.tenant).count()
    updated_at = type(obj)._default_manager.get(pk=obj.pk).updated_at

    response = staff.post(change, change_form_data(staff.get(change)))
    assert response.status_code == 302, response.content[:2000]
    assert AuditLog.objects.for_tenant(world.a.tenant).count() == entries
    assert type(obj)._default_manager.get(pk=obj.pk).updated_at == updated_at

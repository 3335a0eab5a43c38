"""Bots and scopes edited in the admin are validated and written to the audit log."""

from __future__ import annotations

import pytest

from bots.models import Bot, Scope
from bots.tests.factories import BotFactory, ScopeFactory
from conversations.models import Conversation, Message
from conversations.tests.factories import ConversationFactory, MessageFactory
from tenants.models import AuditLog
from tenants.tests.factories import TenantFactory
from tests.staff import change_form_data, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return TenantFactory(slug="acme")


def scope_form(tenant, **overrides) -> dict:
    data = {
        "tenant": str(tenant.pk),
        "name": "Support",
        "description": "Questions about our product.",
        "allowed_topics": "billing,shipping",
        "blocked_topics": "politics",
        "refusal_message": "I can only help with our product.",
        "min_relevance": "0.3",
        "pii_entities": "EMAIL,PHONE",
        "tags": "",
    }
    return {**data, **overrides}


def test_a_scope_created_and_changed_in_the_admin_is_audited_with_the_staff_user(tenant):
    staff = staff_client(tenant, "alice")
    created = staff.post("/admin/bots/scope/add/", scope_form(tenant))
    assert created.status_code == 302
    scope = Scope.objects.for_tenant(tenant).get(name="Support")
    assert scope.blocked_topics == ["politics"] and scope.pii_entities == ["EMAIL", "PHONE"]

    changed = staff.post(
        f"/admin/bots/scope/{scope.pk}/change/", scope_form(tenant, min_relevance="0.5")
    )
    assert changed.status_code == 302
    entries = AuditLog.objects.for_tenant(tenant).filter(target_id=str(scope.pk))
    by_action = {e.action: e for e in entries}
    assert set(by_action) == {"scope.create", "scope.update"}
    assert all(e.actor_type == "staff" and e.actor_label == "alice" for e in entries)
    assert by_action["scope.update"].changes == {"min_relevance": 0.5}


def test_invalid_values_are_refused_by_the_form_not_the_database(tenant):
    staff = staff_client(tenant, "alice")
    response = staff.post(
        "/admin/bots/scope/add/", scope_form(tenant, min_relevance="3", pii_entities="PASSPORT")
    )
    assert response.status_code == 200
    assert not Scope.objects.for_tenant(tenant).exists()


def test_deleting_a_bot_goes_through_the_service_and_is_audited(tenant):
    bot = BotFactory(tenant=tenant)
    staff = staff_client(tenant, "alice")
    response = staff.post(f"/admin/bots/bot/{bot.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Bot.objects.for_tenant(tenant).exists()
    entry = AuditLog.objects.for_tenant(tenant).get(action="bot.delete")
    assert (entry.actor_type, entry.target_id) == ("staff", str(bot.pk))


@pytest.mark.parametrize("superuser", [False, True])
def test_a_bot_is_deleted_with_its_conversations_after_a_confirmation_that_counts_them(
    tenant, superuser
):
    """Conversations and messages are read-only in the admin: the delete page said there was no
    permission to delete them, so a bot that had talked could not be deleted, even by a
    superuser. The API deletes it with its conversations; so does the admin."""
    bot = BotFactory(tenant=tenant, name="Helpdesk")
    kept = ConversationFactory(tenant=tenant)  # another bot's
    for messages in (1, 2):
        conversation = ConversationFactory(tenant=tenant, bot=bot)
        MessageFactory.create_batch(messages, tenant=tenant, conversation=conversation)
    staff = staff_client(tenant, "alice", superuser=superuser)
    url = f"/admin/bots/bot/{bot.pk}/delete/"

    confirm = staff.get(url)
    assert confirm.status_code == 200
    assert not confirm.context["perms_lacking"] and not confirm.context["protected"]
    text = confirm.content.decode()
    assert "Helpdesk" in text
    assert "<li>Bots: 1</li>" in text
    assert "<li>Conversations: 2</li>" in text and "<li>Messages: 3</li>" in text

    assert staff.post(url, {"post": "yes"}).status_code == 302
    assert list(Bot.objects.for_tenant(tenant)) == [kept.bot]
    assert list(Conversation.objects.for_tenant(tenant)) == [kept]
    assert not Message.objects.for_tenant(tenant).exists()
    assert AuditLog.objects.for_tenant(tenant).filter(action="bot.delete").count() == 1


def test_a_scope_in_use_cannot_be_deleted(tenant):
    scope = ScopeFactory(tenant=tenant)
    BotFactory(tenant=tenant, scope=scope)
    staff = staff_client(tenant, "alice")
    staff.post(f"/admin/bots/scope/{scope.pk}/delete/", {"post": "yes"})
    assert Scope.objects.for_tenant(tenant).filter(pk=scope.pk).exists()


@pytest.mark.parametrize(("url", "attr"), [("bots/bot", "bot"), ("bots/scope", "scope"),
                                            ("knowledge/dataset", "dataset")])  # fmt: skip
def test_a_superuser_cannot_move_an_object_to_another_tenant(world, url, attr):
    """Its dependants (conversations, documents, bots) stayed with the old tenant: the save was a
    500, IntegrityError. The tenant is set at creation and shown read-only afterwards."""
    mine = getattr(world.a, attr)
    staff = staff_client(world.a.tenant, "root", superuser=True)
    change = f"/admin/{url}/{mine.pk}/change/"
    page = staff.get(change)
    assert "tenant" not in page.context["adminform"].form.fields

    moved = change_form_data(page, tenant=str(world.b.tenant.pk), scope=None)
    response = staff.post(change, moved)
    assert response.status_code == 302, response.content[:500]
    mine.refresh_from_db()
    assert mine.tenant_id == world.a.tenant.pk

"""The conversation admin at scale: a long conversation's page opens quickly."""

from __future__ import annotations

import datetime as dt

import pytest

from conversations.admin import INLINE_MESSAGES
from conversations.models import Message, MessageRole
from conversations.tests.factories import ConversationFactory
from tenants.tests.factories import TenantFactory
from tests.staff import staff_client

pytestmark = pytest.mark.django_db


def test_a_long_conversation_page_shows_its_latest_messages_and_links_to_all():
    """Every message was an inline row: 5,000 of them took 10 s and 12 MB of HTML."""
    tenant = TenantFactory(slug="acme")
    conversation = ConversationFactory(tenant=tenant, message_count=INLINE_MESSAGES + 20)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    Message.all_tenants.bulk_create(
        Message(
            tenant=tenant,
            conversation=conversation,
            role=MessageRole.USER,
            content=f"question number {n:04d}",
            created_at=start + dt.timedelta(minutes=n),
        )
        for n in range(INLINE_MESSAGES + 20)
    )
    ConversationFactory(tenant=tenant)  # another conversation, whose messages are not listed
    staff = staff_client(tenant, "alice")

    response = staff.get(f"/admin/conversations/conversation/{conversation.pk}/change/")

    assert response.status_code == 200
    (inline,) = response.context["inline_admin_formsets"]
    shown = [form.original.content for form in inline]
    latest = [f"question number {n:04d}" for n in range(20, INLINE_MESSAGES + 20)]
    assert shown == latest  # the latest ones, oldest first
    link = f"/admin/conversations/message/?conversation__id__exact={conversation.pk}"
    assert link in response.content.decode()
    listed = staff.get(link)
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == INLINE_MESSAGES + 20

"""The conversation admin at scale: a long conversation's page and the message list open
quickly."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.admin import INLINE_MESSAGES
from conversations.models import Message, MessageRole
from conversations.tests.factories import ConversationFactory
from tenants.tests.factories import TenantFactory
from tests.plans import explain, rows_read
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


def test_the_message_list_reads_a_page_of_messages_not_every_message():
    """It sorted every message in scope by time for each page, and its date hierarchy read them
    all twice more: 150,000 messages, 0.35-0.43 s a first page (its query 96-137 ms)."""
    tenant = TenantFactory(slug="acme")
    conversations = [ConversationFactory(tenant=tenant) for _ in range(10)]
    Message.all_tenants.bulk_create(
        Message(tenant=tenant, conversation=conversation, role=MessageRole.USER, content="Hi.")
        for conversation in conversations
        for _ in range(30)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations_message")
    superuser = staff_client(tenant, "root", superuser=True)
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get("/admin/conversations/message/")
    assert response.status_code == 200
    page = response.context["cl"].result_list
    assert len(page) == 100
    # A conversation's messages in order, one conversation after the other.
    keys = [(m.conversation_id, m.created_at, m.pk) for m in page]
    assert keys == sorted(keys)
    (sql,) = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "conversations_message"."id"') and "LIMIT 100" in q["sql"]
    ]
    # The page, at most the rest of the conversation it ends in and the conversations (the
    # planner may sort each conversation's 30 by time), not all 300.
    assert rows_read(explain(sql)) <= 100 + 30 + 10

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from conversations.tests.factories import ConversationFactory, MessageFactory, UsageDailyFactory
from tenants.models import UsageDaily
from tenants.tests.factories import ApiKeyFactory, TenantFactory

pytestmark = pytest.mark.django_db


def test_message_cannot_join_another_tenants_conversation():
    theirs = ConversationFactory()
    with pytest.raises(IntegrityError, match="tenant_fk"), transaction.atomic():
        MessageFactory(tenant=TenantFactory(), conversation=theirs)
        connection.check_constraints()


def test_conversation_cannot_be_attributed_to_another_tenants_key():
    with pytest.raises(IntegrityError, match="tenant_fk"), transaction.atomic():
        ConversationFactory(api_key=ApiKeyFactory())
        connection.check_constraints()


def test_refusal_reason_must_be_one_of_the_contract():
    with pytest.raises(IntegrityError, match="refusal_reason"), transaction.atomic():
        MessageFactory(role="assistant", refusal_reason="felt_like_it")


def test_message_role_is_user_or_assistant():
    with pytest.raises(IntegrityError, match="role"), transaction.atomic():
        MessageFactory(role="system")


def test_message_usage_adds_up():
    message = MessageFactory(role="assistant", prompt_tokens=120, completion_tokens=30)
    assert message.usage == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def test_usage_rollup_has_one_row_per_day_bot_and_key_even_without_bot_or_key():
    row = UsageDailyFactory(bot_id=None, api_key_id=None)
    with pytest.raises(IntegrityError, match="usage_daily_unique"), transaction.atomic():
        UsageDailyFactory(tenant=row.tenant, day=row.day, bot_id=None, api_key_id=None)
    assert UsageDaily.objects.for_tenant(row.tenant).count() == 1


def test_deleting_a_key_keeps_its_conversations():
    key = ApiKeyFactory()
    conversation = ConversationFactory(tenant=key.tenant, api_key=key)
    key.delete()
    conversation.refresh_from_db()
    assert conversation.api_key_id is None

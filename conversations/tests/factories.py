from __future__ import annotations

import datetime as dt

import factory

from bots.tests.factories import BotFactory
from conversations.models import Conversation, Message, MessageRole
from tenants.models import UsageDaily
from tenants.tests.factories import ModelFactory, TenantFactory


class ConversationFactory(ModelFactory[Conversation]):
    class Meta:
        model = Conversation

    tenant = factory.SubFactory(TenantFactory)
    bot = factory.SubFactory(BotFactory, tenant=factory.SelfAttribute("..tenant"))


class MessageFactory(ModelFactory[Message]):
    class Meta:
        model = Message

    tenant = factory.SubFactory(TenantFactory)
    conversation = factory.SubFactory(ConversationFactory, tenant=factory.SelfAttribute("..tenant"))
    role = MessageRole.USER
    content = "How do I rotate an API key?"


class UsageDailyFactory(ModelFactory[UsageDaily]):
    class Meta:
        model = UsageDaily

    tenant = factory.SubFactory(TenantFactory)
    day = factory.LazyFunction(lambda: dt.datetime.now(dt.UTC).date())
    requests = 1
    prompt_tokens = 100
    completion_tokens = 20

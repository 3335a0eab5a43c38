# mypy: disable-error-code="arg-type,attr-defined"
"""Test fixtures: a tenant with one object of every kind, and a client for its keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

from bots.models import Bot, Scope
from conversations.models import Conversation, Message
from conversations.tests.factories import ConversationFactory, MessageFactory, UsageDailyFactory
from knowledge.models import Dataset, Document
from knowledge.tests.factories import BotDatasetFactory, ChunkFactory, DocumentFactory
from tenants.models import ApiKey, Role, Tenant
from tenants.services import Actor, audit_record
from tenants.tests.factories import ApiKeyFactory, TenantFactory


@dataclass
class TenantWorld:
    tenant: Tenant
    admin_key: ApiKey
    chat_key: ApiKey
    scope: Scope
    bot: Bot
    dataset: Dataset
    document: Document
    conversation: Conversation
    message: Message
    objects: dict[str, Any] = field(default_factory=dict)

    def client(self, key: ApiKey | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {(key or self.admin_key).plaintext}")
        return client

    def ids(self) -> set[str]:
        return {str(obj.pk) for obj in self.objects.values()}


@dataclass
class World:
    a: TenantWorld
    b: TenantWorld


def build_tenant(slug: str) -> TenantWorld:
    tenant = TenantFactory(slug=slug, default_rate_limit_per_minute=100_000)
    admin_key = ApiKeyFactory(tenant=tenant, role=Role.ADMIN, name=f"{slug} admin")
    chat_key = ApiKeyFactory(tenant=tenant, role=Role.CHAT, name=f"{slug} chat")
    link = BotDatasetFactory(tenant=tenant)
    bot, dataset = link.bot, link.dataset
    document = DocumentFactory(tenant=tenant, dataset=dataset, tags=["faq"])
    ChunkFactory(tenant=tenant, document=document)
    conversation = ConversationFactory(tenant=tenant, bot=bot, api_key=chat_key)
    message = MessageFactory(tenant=tenant, conversation=conversation)
    UsageDailyFactory(tenant=tenant, bot_id=bot.pk, api_key_id=chat_key.pk)
    audit_record(tenant=tenant, actor=Actor.system("tests"), action="bot.create", target=bot)
    objects = {
        "api_key": admin_key,
        "chat_key": chat_key,
        "scope": bot.scope,
        "bot": bot,
        "dataset": dataset,
        "document": document,
        "conversation": conversation,
        "message": message,
    }
    return TenantWorld(
        tenant, admin_key, chat_key, bot.scope, bot, dataset, document, conversation, message,
        objects,
    )  # fmt: skip


def build_world() -> World:
    return World(a=build_tenant("alpha"), b=build_tenant("beta"))

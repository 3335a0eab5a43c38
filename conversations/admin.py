"""Admin for conversations and their messages: read-only (they are customer data)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin

from chatbot_site.staff_admin import (
    ReadOnlyInline,
    RelatedOnlyFilter,
    TenantScopedAdmin,
    admin_link,
)
from conversations.models import Conversation, Message


class MessageInline(ReadOnlyInline):
    model = Message
    fields: ClassVar[Any] = ["created_at", "role", "content", "finish_reason", "refusal_reason",
              "prompt_tokens", "completion_tokens", "latency_ms"]  # fmt: skip
    readonly_fields = fields
    ordering = ["created_at"]


@admin.register(Conversation)
class ConversationAdmin(TenantScopedAdmin):
    read_only = True
    list_display = [
        "title",
        "bot_link",
        "api_key",
        "message_count",
        "last_message_at",
        "created_at",
    ]
    list_filter = [("bot", RelatedOnlyFilter), "last_message_at", "created_at"]
    search_fields = ["title"]
    list_select_related = ["bot", "api_key"]
    inlines = [MessageInline]

    @admin.display(description="bot", ordering="bot__name")
    def bot_link(self, obj: Conversation) -> str:
        return admin_link(obj.bot)


@admin.register(Message)
class MessageAdmin(TenantScopedAdmin):
    read_only = True
    list_display = ["created_at", "conversation_link", "role", "finish_reason", "refusal_reason",
                    "prompt_tokens", "completion_tokens", "latency_ms"]  # fmt: skip
    list_filter = ["role", "finish_reason", "refusal_reason", "created_at"]
    search_fields = ["content"]
    list_select_related = ["conversation"]
    date_hierarchy = "created_at"

    @admin.display(description="conversation")
    def conversation_link(self, obj: Message) -> str:
        return admin_link(obj.conversation)

"""Admin for conversations and their messages: read-only (they are customer data)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chatbot_site.staff_admin import (
    ReadOnlyInline,
    RelatedOnlyFilter,
    TenantScopedAdmin,
    admin_link,
)
from conversations.models import Conversation, Message

# The latest messages a conversation page shows; all of them are in the message list.
INLINE_MESSAGES = 100


def messages_url(conversation_id: Any) -> str:
    url = reverse("admin:conversations_message_changelist")
    return f"{url}?conversation__id__exact={conversation_id}"


class MessageInline(ReadOnlyInline):
    model = Message
    fields: ClassVar[Any] = ["created_at", "role", "content", "finish_reason", "refusal_reason",
              "prompt_tokens", "completion_tokens", "latency_ms"]  # fmt: skip
    readonly_fields = fields
    ordering = ["created_at"]
    verbose_name_plural = (
        f"Messages (the latest {INLINE_MESSAGES}, oldest first; every one is in the message list)"
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The latest messages of this conversation (already found in the staff user's scope by
        # the change view): a conversation of thousands of messages rendered every one of them
        # (5,000: 10 s and 12 MB of HTML).
        match = request.resolver_match
        conversation_id = match.kwargs.get("object_id") if match else None
        if not conversation_id:
            return Message.all_tenants.none()
        latest = (
            super()
            .get_queryset(request)
            .filter(conversation_id=conversation_id)
            .order_by("-created_at", "-pk")
            .values_list("id", flat=True)[:INLINE_MESSAGES]
        )
        return Message.all_tenants.filter(id__in=list(latest))


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
    readonly_fields = ["all_messages"]
    inlines = [MessageInline]

    @admin.display(description="messages")
    def all_messages(self, obj: Conversation) -> str:
        return format_html(
            '<a href="{}">All {} messages</a>', messages_url(obj.pk), obj.message_count
        )

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
    linked_lookups = ("conversation__id__exact",)  # a conversation's "all messages" link
    # A conversation's messages in order, one conversation after another: a page read off the
    # (conversation, created_at) index. The model's ordering (created_at, then Django's -pk)
    # sorted every message in scope for each page, and the date hierarchy read them all twice
    # more (first and last day, every day): 150,000 messages, a superuser's first page 0.5 s
    # (its query a parallel scan and a sort of all 150,000), a tenant's staff user's 0.4-0.6 s.
    # The created_at filter still narrows to a period.
    ordering = ["conversation_id", "created_at", "id"]
    show_full_result_count = False

    @admin.display(description="conversation")
    def conversation_link(self, obj: Message) -> str:
        return admin_link(obj.conversation)

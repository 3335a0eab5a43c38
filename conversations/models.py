"""Conversations and their messages (the daily usage roll-up is ``tenants.models.UsageDaily``)."""

from __future__ import annotations

from typing import ClassVar

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q

from bots.models import Bot
from tenants.models import ApiKey, Tenant, TenantOwned, TenantScopedManager


class Conversation(TenantOwned):
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    # The key that started it: a chat key sees only its own conversations.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    title = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="conversation_tenant_created"),
            models.Index(fields=["tenant", "bot", "-created_at"], name="conversation_bot_created"),
            models.Index(
                fields=["tenant", "api_key", "-created_at"], name="conversation_key_created"
            ),
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class FinishReason(models.TextChoices):
    STOP = "stop", "Stop"
    LENGTH = "length", "Length"
    CONTENT_FILTER = "content_filter", "Cut by the provider's content filter"
    CANCELLED = "cancelled", "Cancelled by the client"
    ERROR = "error", "Error"
    POLICY = "policy_blocked", "Blocked by policy"
    REFUSAL = "refusal", "Refusal"


class RefusalReason(models.TextChoices):
    OUT_OF_SCOPE = "out_of_scope", "Out of scope"
    NO_RELEVANT_CONTEXT = "no_relevant_context", "No relevant context"
    PROMPT_INJECTION = "prompt_injection", "Prompt injection"
    BLOCKED_TOPIC = "blocked_topic", "Blocked topic"


class Message(TenantOwned):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=10, choices=MessageRole.choices)
    content = models.TextField()
    # The answer's citations as the API shows them. A deleted document's are kept without its
    # text (title, source and snippet empty), by PostgreSQL: migration 0004's triggers and its
    # GIN index of the cited document ids (message_cited_documents).
    citations = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    embedding_tokens = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(
        max_length=20, choices=FinishReason.choices, null=True, blank=True
    )
    refusal_reason = models.CharField(
        max_length=30, choices=RefusalReason.choices, null=True, blank=True
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # An answer's verdict under the document rules (knowledge.injection.detect_passage), decided
    # once when it is stored: a flagged one is left out of every later turn's prompt. Null for
    # the user's messages, and for answers stored before migration 0006 (checked when read).
    injection_flagged = models.BooleanField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["created_at"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in MessageRole]), name="message_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(refusal_reason__isnull=True)
                | Q(refusal_reason__in=[r.value for r in RefusalReason]),
                name="message_refusal_reason_valid",
            ),
            models.CheckConstraint(
                condition=Q(finish_reason__isnull=True)
                | Q(finish_reason__in=[r.value for r in FinishReason]),
                name="message_finish_reason_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["conversation", "created_at"], name="message_conversation_created"
            ),
        ]

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def __str__(self) -> str:
        return f"{self.role} {self.created_at:%Y-%m-%d %H:%M:%S}"


class TurnReceipt(models.Model):
    """That a chat turn's answer was stored, and its usage counted: written with them, in the
    same statement (:func:`conversations.chat.turn_write`), keyed by the answer's id. A turn
    stored a second time (a late store whose first COMMIT went through unheard, or whose process
    died before it took the turn out of the spool: :mod:`conversations.late_store`) fails on it
    and writes nothing. The answer's own row was that key, but a turn whose conversation or bot
    was deleted writes no message — only its usage — and one stored and then deleted has none
    left: such a turn stored again counted its tokens twice, and a deleted new conversation
    came back. Kept ``RECEIPT_SECONDS`` (:mod:`conversations.late_store`: past the longest a
    turn is kept), then pruned by the drain; no customer data."""

    id = models.UUIDField(primary_key=True)  # the answer's message id
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    created_at = models.DateTimeField()

    objects: ClassVar[TenantScopedManager] = TenantScopedManager()
    # (as UsageDaily's: no-redef, unused-ignore depending on the stubs plugin's module order)
    all_tenants: ClassVar[models.Manager[TurnReceipt]] = models.Manager()  # type: ignore[no-redef, unused-ignore]

    class Meta:
        default_manager_name = "all_tenants"
        base_manager_name = "all_tenants"
        # Pruned by age: a BRIN index (rows come in time order) costs an insert next to nothing.
        indexes = [BrinIndex(fields=["created_at"], name="turn_receipt_created")]

    def __str__(self) -> str:
        return str(self.id)

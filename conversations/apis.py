"""Conversation history (chat keys: their own only; admin keys: the tenant's) and usage."""

from __future__ import annotations

import datetime as dt
import uuid
from functools import cached_property
from typing import Any

from django.db.models import QuerySet, Sum
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from bots.reach import Reach
from chatbot_site.errors import ValidationFailed
from chatbot_site.pagination import (
    PAGE_PARAMETERS,
    group_page,
    keyset_page,
    page_of,
    paginate,
    parse_limit,
)
from chatbot_site.params import ISO_8601, TIME_RANGE, parse_range, parse_uuid
from chatbot_site.schema import JsonObjectField, UnsetAsNullField
from conversations.models import Conversation, FinishReason, Message, MessageRole
from conversations.services import conversation_delete
from tenants.api_base import TenantApi
from tenants.models import Role, UsageDaily
from tenants.usage import tokens_used_this_month


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class CitationOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="The [n] marker in output.")
    document_id = serializers.UUIDField()
    chunk_id = serializers.UUIDField()
    dataset_id = serializers.UUIDField()
    title = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    page = serializers.IntegerField(allow_null=True)
    snippet = serializers.CharField()
    score = serializers.FloatField()


class RefusalOutput(serializers.Serializer):
    reason = serializers.ChoiceField(
        choices=["out_of_scope", "no_relevant_context", "prompt_injection", "blocked_topic"]
    )


@extend_schema_field(CitationOutput(many=True))
class CitationsField(serializers.JSONField):
    """A message's citations, stored as the chat answer showed them (a deleted document's
    with its title, source and snippet emptied): in the schema, that list, not any JSON."""


class MessageOutput(serializers.Serializer):
    id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = serializers.CharField()
    citations = CitationsField()
    usage = UsageSerializer()
    model = UnsetAsNullField(
        help_text="The model the turn was answered for; null on user messages."
    )
    finish_reason = serializers.ChoiceField(choices=FinishReason.choices, allow_null=True)
    refusal = serializers.SerializerMethodField()
    latency_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(RefusalOutput(allow_null=True))
    def get_refusal(self, message: Message) -> dict[str, str] | None:
        return {"reason": message.refusal_reason} if message.refusal_reason else None


class ConversationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    bot_id = serializers.UUIDField()
    api_key_id = serializers.UUIDField(allow_null=True)
    title = serializers.CharField()
    metadata = JsonObjectField()
    message_count = serializers.IntegerField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, instance: Conversation) -> dict[str, Any]:
        data = dict(super().to_representation(instance))
        # A key limited to some bots: the id of a key it does not manage is null.
        data["api_key_id"] = self.context["reach"].shown_key_id(instance.api_key_id)
        return data


class ConversationDetailOutput(ConversationOutput):
    messages = MessageOutput(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="The next page of messages (?cursor=); null: none left."
    )


# A conversation's messages per answer, oldest first (``?limit=`` up to as many). Every message
# of a conversation of up to this many, as before paging; one of 10,000 was one answer of
# 5.5 MB that took 1.8-2.1 s.
MESSAGES_PER_PAGE = 1000


class ConversationApiBase(TenantApi):
    required_role = Role.CHAT

    @cached_property
    def reach(self) -> Reach:
        return Reach(self.tenant, self.api_key)

    def conversations(self) -> QuerySet[Conversation]:
        conversations = self.scoped(Conversation)
        if self.api_key.role != Role.ADMIN:
            conversations = conversations.filter(api_key=self.api_key)
        return self.reach.of_its_bots(conversations)

    def output(self, rows: Any, **kwargs: Any) -> Any:
        return ConversationOutput(rows, context={"reach": self.reach}, **kwargs).data


class ConversationListApi(ConversationApiBase):
    @extend_schema(
        operation_id="conversations_list",
        responses=page_of(ConversationOutput),
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("bot_id", OpenApiTypes.UUID), *TIME_RANGE],
        tags=["conversations"],
    )
    def get(self, request: Request) -> Response:
        conversations = self.conversations()
        if bot_id := parse_uuid(request.query_params.get("bot_id"), "bot_id"):
            conversations = conversations.filter(bot_id=bot_id)
        start, end = parse_range(request.query_params)
        if start:
            conversations = conversations.filter(created_at__gte=start)
        if end:
            conversations = conversations.filter(created_at__lt=end)
        return Response(paginate(conversations, request, lambda r: self.output(r, many=True)))


class ConversationDetailApi(ConversationApiBase):
    @extend_schema(
        operation_id="conversations_retrieve",
        responses=ConversationDetailOutput,
        parameters=[
            OpenApiParameter(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MESSAGES_PER_PAGE,
                    "default": MESSAGES_PER_PAGE,
                },
                description=f"Messages, 1..{MESSAGES_PER_PAGE}; default {MESSAGES_PER_PAGE}.",
            ),
            OpenApiParameter(
                "cursor",
                str,
                description="`next_cursor` of the previous answer: its next messages.",
            ),
        ],
        tags=["conversations"],
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        limit = parse_limit(request, default=MESSAGES_PER_PAGE, most=MESSAGES_PER_PAGE)
        conversation = self.get_object(Conversation, conversation_id, queryset=self.conversations())
        messages = Message.objects.for_tenant(self.tenant).filter(conversation=conversation)
        page, next_cursor = keyset_page(messages, request, limit=limit, oldest_first=True)
        return Response(
            {
                **self.output(conversation),
                "messages": MessageOutput(page, many=True).data,
                "next_cursor": next_cursor,
            }
        )

    @extend_schema(
        operation_id="conversations_destroy", responses={204: None}, tags=["conversations"]
    )
    def delete(self, request: Request, conversation_id: str) -> Response:
        conversation = self.get_object(Conversation, conversation_id, queryset=self.conversations())
        conversation_delete(tenant=self.tenant, actor=self.actor, conversation=conversation)
        return Response(status=204)


# --- usage ---------------------------------------------------------------------------------


class UsageRow(serializers.Serializer):
    day = serializers.DateField(required=False)
    bot_id = serializers.UUIDField(required=False, allow_null=True)
    api_key_id = serializers.UUIDField(required=False, allow_null=True)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    embedding_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class QuotaOutput(serializers.Serializer):
    monthly_token_quota = serializers.IntegerField(allow_null=True)
    used_this_month = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)


class UsageOutput(serializers.Serializer):
    data = UsageRow(many=True)  # type: ignore[assignment]  # the contract's field name
    next_cursor = serializers.CharField(
        allow_null=True, help_text="The next page of rows (?cursor=); null: none left."
    )
    totals = UsageRow(help_text="The whole range's, whatever the page.")
    quota = QuotaOutput()


GROUPS = {"day": "day", "bot": "bot_id", "api_key": "api_key_id"}


class UsageApi(TenantApi):
    @extend_schema(
        operation_id="usage",
        responses=UsageOutput,
        parameters=[
            OpenApiParameter(
                "from",
                ISO_8601,
                description="The first day (UTC) is the day of this date or date-time; "
                "default: 30 days ago.",
            ),
            OpenApiParameter(
                "to",
                ISO_8601,
                description="A date: the last day (UTC); a date-time (exclusive): the last day "
                "that begins before it; default: today.",
            ),
            OpenApiParameter("group_by", str, enum=list(GROUPS), default="day"),
            *PAGE_PARAMETERS,
        ],
        tags=["usage"],
    )
    def get(self, request: Request) -> Response:
        today = dt.datetime.now(dt.UTC).date()
        # Whole UTC days, read by the lists' rule (parse_range): a date 'to' is the last day.
        since, until = parse_range(request.query_params)
        start = since.date() if since else today - dt.timedelta(30)
        end = (until - dt.timedelta.resolution).date() if until else today
        if start > end:  # (a default side met the other)
            raise ValidationFailed(details={"from": ["Must not be after 'to'."]})
        group_by = request.query_params.get("group_by") or "day"
        if group_by not in GROUPS:
            raise ValidationFailed(details={"group_by": [f"Must be one of {', '.join(GROUPS)}."]})
        column = GROUPS[group_by]
        rows = UsageDaily.objects.for_tenant(self.tenant).filter(day__gte=start, day__lte=end)
        reach = Reach(self.tenant, self.api_key)
        rows = reach.of_its_bots(rows)  # a bot-limited key: theirs
        sums: dict[str, Any] = {
            "requests": Sum("requests"),
            "prompt_tokens": Sum("prompt_tokens"),
            "completion_tokens": Sum("completion_tokens"),
            "embedding_tokens": Sum("embedding_tokens"),
        }
        # By key, a bot-limited key's rows are those of the keys it manages: not the others'
        # ids and figures (the totals stay its bots', as in every grouping).
        grouped = reach.of_its_keys(rows) if group_by == "api_key" else rows
        page, next_cursor = group_page(
            grouped.values(column).annotate(**sums),
            request,
            column=column,
            parse=dt.date.fromisoformat if column == "day" else uuid.UUID,
            limit=parse_limit(request),
        )
        totals = self.row({k: v or 0 for k, v in rows.aggregate(**sums).items()})
        used = tokens_used_this_month(tenant=self.tenant, today=today)
        quota = self.tenant.monthly_token_quota
        return Response(
            {
                "data": [self.row(r) for r in page],
                "next_cursor": next_cursor,
                "totals": totals,
                "quota": {
                    "monthly_token_quota": quota,
                    "used_this_month": used,
                    "remaining": max(0, quota - used) if quota is not None else None,
                },
            }
        )

    @staticmethod
    def row(values: dict[str, Any]) -> dict[str, Any]:
        out = {k: (str(v) if k in {"bot_id", "api_key_id"} and v else v) for k, v in values.items()}
        out["total_tokens"] = (
            out["prompt_tokens"] + out["completion_tokens"] + out["embedding_tokens"]
        )
        return out

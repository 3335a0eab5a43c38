"""``POST /v1/retrieve``: the bot's passages for a query, for integrators and evaluation.

It lives with chat (not in ``knowledge``) because it is a chat-key endpoint whose query
embedding counts in the tenant's usage (``tenants.usage.usage_record``) and, as chat, is
refused past the monthly quota (``tenants.usage.quota_check``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from bots.services import bot_for_key
from chatbot_site.strict import StrictInput
from conversations.chat_api import ChatFilters
from knowledge.retrieval import MODES, retrieve, search_space_for_bot
from tenants.api_base import TenantApi
from tenants.models import Role
from tenants.usage import quota_check, usage_record


class RetrieveInput(StrictInput):
    refuse_unknown = True
    bot_id = serializers.UUIDField()
    query = serializers.CharField(max_length=4000)
    top_k = serializers.IntegerField(min_value=1, max_value=100, required=False)
    filters = ChatFilters(required=False)
    mode = serializers.ChoiceField(
        choices=list(MODES), default="hybrid", help_text="hybrid (default), vector or text."
    )


class HitScores(serializers.Serializer):
    vector = serializers.FloatField(allow_null=True, help_text="Cosine similarity.")
    text = serializers.FloatField(allow_null=True, help_text="ts_rank_cd of the text match.")
    fused = serializers.FloatField(help_text="Weighted reciprocal rank fusion.")


class HitOutput(serializers.Serializer):
    document_id = serializers.UUIDField()
    chunk_id = serializers.UUIDField()
    dataset_id = serializers.UUIDField()
    title = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    page = serializers.IntegerField(allow_null=True)
    text = serializers.CharField()
    heading_path = serializers.ListField(child=serializers.CharField())
    tags = serializers.ListField(child=serializers.CharField())
    score = serializers.FloatField(
        help_text="Relevance 0..1 (what a scope's min_relevance is compared with)."
    )
    scores = HitScores()
    injection_suspected = serializers.BooleanField(
        help_text="Flagged at ingestion as a likely prompt injection (weighted down)."
    )


class RetrieveOutput(serializers.Serializer):
    data = HitOutput(many=True)  # type: ignore[assignment]  # the contract's field name
    usage = serializers.DictField(child=serializers.IntegerField())


class RetrieveApi(TenantApi):
    required_role = Role.CHAT

    @extend_schema(
        operation_id="retrieve",
        request=RetrieveInput,
        responses={
            200: RetrieveOutput,
            403: OpenApiResponse(description="permission_denied: the bot is not active"),
            404: OpenApiResponse(description="not_found: the bot (`bot_id`)"),
            502: OpenApiResponse(description="upstream_error: the embedding provider failed"),
        },
        tags=["chat"],
        description="Retrieval only: the bot's best passages for a query, best first.",
    )
    def post(self, request: Request) -> Response:
        data = self.validated(RetrieveInput, request.data)
        bot = bot_for_key(tenant=self.tenant, api_key=self.api_key, bot_id=data["bot_id"])
        # The query's embedding costs tokens: past the quota, refused as chat is (it embedded
        # on, and a tenant past its quota kept spending). No query without a quota.
        quota_check(tenant=self.tenant)
        space = search_space_for_bot(bot, filter_tags=(data.get("filters") or {}).get("tags", []))
        result = retrieve(
            space, query=data["query"], top_k=data.get("top_k") or bot.top_k, mode=data["mode"]
        )
        usage_record(
            tenant=self.tenant,
            bot_id=bot.pk,
            api_key_id=self.api_key.pk,
            embedding_tokens=result.embedding_tokens,
        )
        return Response(
            {
                "data": [hit.as_json() for hit in result.hits],
                "usage": {"embedding_tokens": result.embedding_tokens},
            }
        )

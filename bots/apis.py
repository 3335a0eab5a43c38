"""Admin API for scopes and API keys.

API keys live here rather than in ``tenants`` because a key's ``bot_ids`` must be checked against
the tenant's bots, and dependencies point one way (bots → tenants)."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from bots.models import PII_ENTITIES, Scope
from bots.reach import Reach
from bots.services import scope_create, scope_delete, scope_update
from chatbot_site.errors import ValidationFailed
from chatbot_site.pagination import PAGE_PARAMETERS, page_of, paginate
from chatbot_site.params import TagListField, parse_bool
from chatbot_site.schema import NAME_TAKEN
from chatbot_site.strict import StrictInput
from tenants.api_base import TenantApi, located
from tenants.models import KEY_RATE_LIMIT_MAX, ApiKey, Role, validate_key_expiry
from tenants.services import api_key_create, api_key_revoke, api_key_update


def Topic() -> serializers.CharField:
    return serializers.CharField(max_length=200)


class ScopeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    allowed_topics = serializers.ListField(child=serializers.CharField())
    blocked_topics = serializers.ListField(child=serializers.CharField())
    refusal_message = serializers.CharField()
    min_relevance = serializers.FloatField()
    answer_without_context = serializers.BooleanField()
    pii_entities = serializers.ListField(child=serializers.ChoiceField(choices=PII_ENTITIES))
    tags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ScopeInput(StrictInput):
    refuse_unknown = True
    echoed = frozenset(ScopeOutput._declared_fields)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, max_length=20_000, required=False)
    allowed_topics = serializers.ListField(child=Topic(), max_length=200, required=False)
    blocked_topics = serializers.ListField(child=Topic(), max_length=200, required=False)
    refusal_message = serializers.CharField(max_length=2000, required=False)
    min_relevance = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    answer_without_context = serializers.BooleanField(required=False)
    pii_entities = serializers.ListField(
        child=serializers.ChoiceField(choices=PII_ENTITIES), max_length=len(PII_ENTITIES),
        required=False,
    )  # fmt: skip
    tags = TagListField(max_length=100, required=False)

    def validate_pii_entities(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # a set of entities: ["EMAIL", "EMAIL"] is ["EMAIL"]


class ReachApi(TenantApi):
    """What the key reaches (``bots.reach``): a bot-limited key, its bots and what they use."""

    @property
    def reach(self) -> Reach:
        return Reach(self.tenant, self.api_key)


class ScopeListCreateApi(ReachApi):
    @extend_schema(
        operation_id="scopes_list",
        parameters=PAGE_PARAMETERS,
        responses=page_of(ScopeOutput),
        tags=["scopes"],
    )
    def get(self, request: Request) -> Response:
        scopes = self.reach.scopes()
        page = paginate(scopes, request, lambda rows: ScopeOutput(rows, many=True).data)
        return Response(page)

    @extend_schema(
        operation_id="scopes_create",
        request=ScopeInput,
        responses={201: ScopeOutput, 409: NAME_TAKEN},
        tags=["scopes"],
        examples=[
            OpenApiExample(
                "billing scope",
                value={
                    "name": "Billing questions",
                    "description": "Invoices, payment methods, refunds and plans.",
                    "allowed_topics": ["invoices", "payments", "refunds", "plans"],
                    "blocked_topics": ["legal advice"],
                    "refusal_message": "I can only help with billing questions.",
                    "min_relevance": 0.35,
                    "pii_entities": ["EMAIL", "CREDIT_CARD", "IBAN"],
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        self.reach.check_may_create("scopes")
        data = self.validated(ScopeInput, request.data)
        scope = scope_create(tenant=self.tenant, actor=self.actor, **data)
        return located(Response(ScopeOutput(scope).data, status=201), "scope-detail", scope.pk)


class ScopeDetailApi(ReachApi):
    def scope(self, scope_id: uuid.UUID, *, change: bool = False) -> Scope:
        scope = self.get_object(Scope, scope_id, queryset=self.reach.scopes())
        if change:
            self.reach.check_scope_unshared(scope)
        return scope

    @extend_schema(operation_id="scopes_retrieve", responses=ScopeOutput, tags=["scopes"])
    def get(self, request: Request, scope_id: uuid.UUID) -> Response:
        return Response(ScopeOutput(self.scope(scope_id)).data)

    @extend_schema(
        operation_id="scopes_update",
        request=ScopeInput(partial=True),
        responses={200: ScopeOutput, 409: NAME_TAKEN},
        tags=["scopes"],
    )
    @transaction.atomic  # the check that no other bot uses it holds until the change commits
    def patch(self, request: Request, scope_id: uuid.UUID) -> Response:
        scope = self.scope(scope_id, change=True)
        changes = self.validated(ScopeInput, request.data, partial=True)
        scope = scope_update(tenant=self.tenant, actor=self.actor, scope=scope, changes=changes)
        return Response(ScopeOutput(scope).data)

    @extend_schema(
        operation_id="scopes_destroy",
        responses={204: None, 409: OpenApiResponse(description="conflict: bots use the scope")},
        tags=["scopes"],
    )
    @transaction.atomic  # as patch
    def delete(self, request: Request, scope_id: uuid.UUID) -> Response:
        scope_delete(tenant=self.tenant, actor=self.actor, scope=self.scope(scope_id, change=True))
        return Response(status=204)


# --- API keys ------------------------------------------------------------------------------


class ApiKeyOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    bot_ids = serializers.ListField(child=serializers.UUIDField())
    rate_limit_per_minute = serializers.IntegerField(allow_null=True)
    rate_limit_shared = serializers.BooleanField(
        help_text="true: its requests count against the rate limit of the bot-limited key that "
        "created it, or last set its limit, too (past it: 429 with details.shared true)."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreatedOutput(ApiKeyOutput):
    api_key = serializers.CharField(help_text="The secret. Shown in this response only.")


class ApiKeyInput(StrictInput):
    refuse_unknown = True
    echoed = frozenset(ApiKeyOutput._declared_fields)
    name = serializers.CharField(max_length=200, allow_blank=True, required=False)
    role = serializers.ChoiceField(choices=Role.choices)
    bot_ids = serializers.ListField(child=serializers.UUIDField(), max_length=1000, required=False)
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, max_value=KEY_RATE_LIMIT_MAX, allow_null=True, required=False
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, required=False, validators=[validate_key_expiry]
    )


class ApiKeyMixin(ReachApi):
    """A key limited to some bots (``bot_ids``) manages only keys limited to some of the same
    bots, itself included: otherwise it could make a key for every bot, or lift its own limit
    (``bots.reach``: also their expiry and rate limit)."""

    def managed_keys(self) -> QuerySet[ApiKey]:
        return self.reach.keys()

    def checked_bot_ids(self, bot_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        # Among the bots the key reaches: another bot is "not found", as a missing one (it was
        # 403, a missing one 400: a bot-limited key learned which ids were the tenant's bots).
        unique = list(dict.fromkeys(bot_ids))
        found = set(self.reach.bots().filter(pk__in=unique).values_list("pk", flat=True))
        missing = [str(pk) for pk in unique if pk not in found]
        if missing:
            raise ValidationFailed(details={"bot_ids": [f"Bot not found: {pk}" for pk in missing]})
        self.reach.check_key_within(unique)
        return unique


class ApiKeyListCreateApi(ApiKeyMixin):
    @extend_schema(
        operation_id="api_keys_list",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter(
                "include_revoked",
                bool,
                description="true: revoked keys too (default: only keys not revoked).",
            ),
        ],
        responses=page_of(ApiKeyOutput),
        tags=["api-keys"],
    )
    def get(self, request: Request) -> Response:
        keys = self.managed_keys()
        # A value that is no boolean is a field error, as on every route (it listed the keys
        # not revoked, as if 'false' had been sent: ?include_revoked=yes hid what it asked for).
        if not parse_bool(request.query_params.get("include_revoked"), "include_revoked"):
            keys = keys.filter(revoked_at__isnull=True)
        return Response(paginate(keys, request, lambda rows: ApiKeyOutput(rows, many=True).data))

    @extend_schema(
        operation_id="api_keys_create",
        request=ApiKeyInput,
        responses={201: ApiKeyCreatedOutput},
        tags=["api-keys"],
        examples=[
            OpenApiExample(
                "widget key",
                value={
                    "name": "website widget",
                    "role": "chat",
                    "bot_ids": ["5f0c6a3e-8d1b-4c55-9a1e-2b7f3c9d4e10"],
                    "rate_limit_per_minute": 30,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.validated(ApiKeyInput, request.data)
        data["bot_ids"] = self.checked_bot_ids(data.get("bot_ids", []))
        self.reach.check_key_expiry_within(data.get("expires_at"))
        self.reach.check_key_rate_within(data.get("rate_limit_per_minute"))
        key, plaintext = api_key_create(
            tenant=self.tenant,
            actor=self.actor,
            limited_by=self.reach.limited_key(),
            **data,
        )
        body = dict(ApiKeyOutput(key).data)
        body["api_key"] = plaintext
        response = located(Response(body, status=201), "api-key-detail", key.pk)
        response["Cache-Control"] = "no-store"
        return response


class ApiKeyDetailApi(ApiKeyMixin):
    @extend_schema(
        operation_id="api_keys_update",
        request=ApiKeyInput(partial=True),
        responses={
            200: ApiKeyOutput,
            409: OpenApiResponse(description="conflict: the key is revoked"),
        },
        tags=["api-keys"],
    )
    def patch(self, request: Request, key_id: uuid.UUID) -> Response:
        key = self.get_object(ApiKey, key_id, queryset=self.managed_keys())
        changes = self.validated(ApiKeyInput, request.data, partial=True)
        if "bot_ids" in changes:
            changes["bot_ids"] = self.checked_bot_ids(changes["bot_ids"])
        if "expires_at" in changes:
            self.reach.check_key_expiry_within(changes["expires_at"])
        if "rate_limit_per_minute" in changes:
            self.reach.check_key_rate_within(changes["rate_limit_per_minute"])
        key = api_key_update(
            tenant=self.tenant,
            actor=self.actor,
            key=key,
            changes=changes,
            limited_by=self.reach.limited_key(),
        )
        return Response(ApiKeyOutput(key).data)

    @extend_schema(operation_id="api_keys_revoke", responses={204: None}, tags=["api-keys"])
    def delete(self, request: Request, key_id: uuid.UUID) -> Response:
        key = self.get_object(ApiKey, key_id, queryset=self.managed_keys())
        api_key_revoke(tenant=self.tenant, actor=self.actor, key=key)
        return Response(status=204)

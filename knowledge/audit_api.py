"""The audit log: who did what, when. Served from this app, not ``tenants``, because a key
limited to some bots reads only the entries about what it reaches (``knowledge.reach``: its
bots, their conversations, the scopes, datasets and documents they use, the keys it manages),
and dependencies point one way."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from chatbot_site.errors import ValidationFailed
from chatbot_site.pagination import PAGE_PARAMETERS, page_of, paginate
from chatbot_site.params import TIME_RANGE, parse_object_id, parse_range
from chatbot_site.schema import JsonObjectField
from knowledge.reach import Reach
from tenants.api_base import TenantApi
from tenants.models import ActorType, AuditLog


class AuditLogOutput(serializers.Serializer):
    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    actor_type = serializers.ChoiceField(choices=ActorType.choices)
    actor_id = serializers.CharField()
    actor_label = serializers.CharField()
    action = serializers.CharField()
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    changes = JsonObjectField()
    ip = serializers.CharField(allow_null=True)
    request_id = serializers.CharField()

    def to_representation(self, instance: AuditLog) -> dict[str, Any]:
        data = dict(super().to_representation(instance))
        reach: Reach = self.context["reach"]
        if (
            instance.actor_type == ActorType.API_KEY
            and reach.shown_key_id(instance.actor_id) is None
        ):
            # A key a bot-limited key does not manage: no id, name or address of it.
            data.update(actor_id="", actor_label="", ip=None)
        return data


OBJECT_ID = "A UUID, or the integer id of a staff user or membership; else 400."
# The kinds an entry's target_type holds: its model's name (tenants.services.audit_record).
TARGET_KINDS = "bot, scope, dataset, document, apikey, conversation, tenant, staffmembership"


def parse_target_type(value: str | None) -> str | None:
    """A kind of object an entry can name: a model's name; anything else is a field error.
    Any string matched, so ``api_key`` (the actions' spelling) was an empty page."""
    if not value:
        return None
    if value not in {model._meta.model_name for model in apps.get_models()}:
        raise ValidationFailed(
            details={"target_type": [f"Not a kind of object; the kinds are: {TARGET_KINDS}."]}
        )
    return value


class AuditLogListApi(TenantApi):
    @extend_schema(
        operation_id="audit_logs_list",
        responses=page_of(AuditLogOutput),
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("action", str, description="e.g. bot.update"),
            OpenApiParameter("target_type", str, description=f"One of {TARGET_KINDS} (else 400)."),
            OpenApiParameter("target_id", str, description=OBJECT_ID),
            OpenApiParameter("actor_id", str, description=OBJECT_ID),
            *TIME_RANGE,
        ],
        tags=["audit-logs"],
    )
    def get(self, request: Request) -> Response:
        reach = Reach(self.tenant, self.api_key)
        entries = reach.audit_entries()
        params = request.query_params
        if action := params.get("action"):
            entries = entries.filter(action=action)
        if target_type := parse_target_type(params.get("target_type")):
            entries = entries.filter(target_type=target_type)
        for name in ("target_id", "actor_id"):
            if object_id := parse_object_id(params.get(name), name):
                entries = entries.filter(**{name: object_id})
                if name == "actor_id" and reach.shown_key_id(object_id) is None:
                    # nor are the entries of such a key told apart by asking for its id
                    entries = entries.exclude(actor_type=ActorType.API_KEY)
        start, end = parse_range(params)
        if start:
            entries = entries.filter(created_at__gte=start)
        if end:
            entries = entries.filter(created_at__lt=end)
        return Response(
            paginate(
                entries,
                request,
                lambda r: AuditLogOutput(r, many=True, context={"reach": reach}).data,
            )
        )

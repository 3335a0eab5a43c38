"""Token exchange and the audit log."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbot_site import ratelimit
from chatbot_site.errors import AuthenticationFailed
from chatbot_site.pagination import PAGE_PARAMETERS, page_of, paginate
from chatbot_site.params import TIME_RANGE, parse_range
from chatbot_site.schema import JsonObjectField
from tenants.api_base import TenantApi
from tenants.authentication import (
    FAILURE,
    Failed,
    failure_guard,
    issue_token,
    key_for,
    note_failure,
    too_many_failures,
    touch_last_used,
)
from tenants.models import ActorType, AuditLog


class TokenInput(serializers.Serializer):
    api_key = serializers.CharField(max_length=300, trim_whitespace=True)


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_in = serializers.IntegerField(help_text="Seconds.")


class AuthTokenApi(APIView):
    """Exchange an API key for a short-lived JWT. Failed attempts are limited per client IP."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token",
        request=TokenInput,
        responses={
            200: TokenOutput,
            401: OpenApiResponse(description="authentication_failed: the key is not valid"),
            429: OpenApiResponse(
                description="rate_limited: too many failed credentials from this address"
            ),
        },
        auth=[],
        tags=["auth"],
        examples=[
            OpenApiExample(
                "exchange",
                value={"api_key": "cbk_0123456789ab_EXAMPLE-secret-EXAMPLE-secret-EXAMPLE-secre"},
                request_only=True,
            ),
            OpenApiExample(
                "token",
                value={
                    "access_token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_type": "Bearer",
                    "expires_in": 900,
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        bucket, limit = failure_guard(request)
        if not (looked := ratelimit.hit(bucket, limit=limit, dry_run=True)).allowed:
            raise too_many_failures(looked)
        serializer = TokenInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            key = key_for(serializer.validated_data["api_key"])
        except Failed as failed:  # counted if a guess, as a Bearer key's failure is
            note_failure(request, failed)
            raise AuthenticationFailed(FAILURE) from None
        touch_last_used(key, timezone.now())
        token, expires_in = issue_token(key)
        response = Response(
            {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
        )
        response["Cache-Control"] = "no-store"
        return response


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


class AuditLogListApi(TenantApi):
    @extend_schema(
        operation_id="audit_logs_list",
        responses=page_of(AuditLogOutput),
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("action", str, description="e.g. bot.update"),
            OpenApiParameter("target_type", str, description="e.g. bot, apikey"),
            OpenApiParameter("target_id", str),
            OpenApiParameter("actor_id", str),
            *TIME_RANGE,
        ],
        tags=["audit-logs"],
    )
    def get(self, request: Request) -> Response:
        entries = AuditLog.objects.for_tenant(self.tenant)
        params = request.query_params
        for name in ("action", "target_type", "target_id", "actor_id"):
            if value := params.get(name):
                entries = entries.filter(**{name: value})
        start, end = parse_range(params)
        if start:
            entries = entries.filter(created_at__gte=start)
        if end:
            entries = entries.filter(created_at__lt=end)
        return Response(paginate(entries, request, lambda r: AuditLogOutput(r, many=True).data))

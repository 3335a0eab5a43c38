"""Token exchange. (The audit log is served by ``knowledge.audit_api``: a bot-limited key reads
the entries about what it reaches, which only that layer knows.)"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from chatbot_site import ratelimit
from chatbot_site.errors import AuthenticationFailed
from chatbot_site.options import AllowOptions
from chatbot_site.strict import StrictInput
from tenants.api_base import admit
from tenants.authentication import (
    FAILURE,
    Failed,
    KeyPrincipal,
    failure_guard,
    issue_token,
    key_for,
    note_failure,
    too_many_failures,
    touch_last_used,
)
from tenants.models import Role


class TokenInput(StrictInput):
    api_key = serializers.CharField(max_length=300, trim_whitespace=True)


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_in = serializers.IntegerField(help_text="Seconds.")


class AuthTokenApi(AllowOptions):
    """Exchange an API key for a short-lived JWT. Failed attempts are limited per client IP; an
    exchange with a good key is a request of that key (API.md: limits are per key, and every
    keyed response carries ``RateLimit-*``), so a key past its limit gets no fresh token either.
    (It was neither counted nor told: a key at its limit exchanged itself without end.)"""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token",
        request=TokenInput,
        responses={
            200: TokenOutput,
            401: OpenApiResponse(description="authentication_failed: the key is not valid"),
            429: OpenApiResponse(
                description="rate_limited: too many failed credentials from this address, or "
                "the key is past its rate limit"
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
        access = admit(KeyPrincipal(api_key=key), request, required_role=Role.CHAT)
        touch_last_used(key, timezone.now())
        token, expires_in = issue_token(key)
        response = Response(
            {"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
            headers=access.rate_headers,
        )
        response["Cache-Control"] = "no-store"
        return response

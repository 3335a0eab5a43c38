"""OpenAPI additions: the bearer auth scheme and the error envelope on every operation."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from chatbot_site.errors import STATUS_CODES

ERROR_CODES = sorted(
    {code for code, _message in STATUS_CODES.values()} | {"validation_error", "quota_exceeded"}
)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": ERROR_CODES,
                },
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "description": "For validation_error: field → list of messages.",
                    "additionalProperties": True,
                },
                "request_id": {"type": "string"},
            },
        }
    },
    "example": {
        "error": {
            "code": "not_found",
            "message": "Bot not found.",
            "details": {},
            "request_id": "7f1c0c8e5b8a4c1f9a4e0f5f2d6b3a21",
        }
    },
}

ERRORS_BY_METHOD = {
    "get": ["400", "401", "403", "404", "429", "503"],
    "post": ["400", "401", "403", "404", "409", "413", "415", "429", "503"],
    "patch": ["400", "401", "403", "404", "409", "413", "415", "429", "503"],
    "delete": ["401", "403", "404", "409", "429", "503"],
}
DESCRIPTIONS = {
    "400": "invalid_request / validation_error",
    "401": "authentication_failed",
    "403": "permission_denied (the key's role does not allow this)",
    "404": "not_found (also: another tenant's object)",
    "409": "conflict",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "429": "rate_limited (with Retry-After) / quota_exceeded",
    "503": "service_unavailable (the database does not answer; with Retry-After)",
}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`cbk_...`) or a JWT from `POST /v1/auth/token`.",
        }


def add_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    from conversations.guardrails import PolicyBlocked  # chat's 502 when an answer is withheld

    components = result.setdefault("components", {})
    error_schema = copy.deepcopy(ERROR_SCHEMA)
    error_schema["properties"]["error"]["properties"]["code"]["enum"] = sorted(
        {*ERROR_CODES, PolicyBlocked.code}
    )
    components.setdefault("schemas", {})["Error"] = error_schema
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = list(ERRORS_BY_METHOD.get(method, []))
            if not operation.get("security") and path.endswith("/health"):
                codes = []
                responses["503"] = {
                    "description": "The database does not answer.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
            responses.setdefault(
                "500",
                {
                    "description": "internal_error",
                    "content": {"application/json": {"schema": ref}},
                },
            )
            # An error a view documents with a description only (chat's 409 and 502) has the
            # envelope as its body too.
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and "content" not in response:
                    response["content"] = {"application/json": {"schema": ref}}
    return result


def add_async_views(endpoints: list[tuple[Any, ...]], **_: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular documents DRF views only; the async chat view is described by a
    schema-only DRF view (:class:`conversations.chat_api.ChatSchemaView`)."""
    from conversations.chat_api import ChatSchemaView

    callback = ChatSchemaView.as_view()
    return [*endpoints, ("/v1/chat", r"^v1/chat$", "POST", callback)]

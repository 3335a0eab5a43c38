"""OpenAPI additions: the bearer auth scheme, the error envelope on every operation, and the
headers the contract names on every response."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatbot_site.errors import STATUS_CODES

ERROR_CODES = sorted(
    {code for code, _message in STATUS_CODES.values()} | {"validation_error", "quota_exceeded"}
)

# The envelope's inner object is a component of its own: inline, a generated client named it
# after its place (``ErrorError``), a class no one would look for.
ERROR_DETAIL_SCHEMA: dict[str, Any] = {
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
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
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


# The headers API.md names (components/headers), and on which responses they come.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The client's own X-Request-ID when it sent a sane one, else a new id; "
        "the error envelope's request_id.",
        "schema": {"type": "string"},
        "required": True,
    },
    "RateLimit-Limit": {
        "description": "Requests per minute this key may make (its own limit or the tenant's "
        "default). On every response to a request with a valid key.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the window is full again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# A client may send its own request id (API.md): a parameter of every operation.
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for this request, echoed in the X-Request-ID response header and the "
    "error envelope's request_id when it is 1-128 characters of letters, digits and . _ : - "
    "(starting with a letter or digit); otherwise the server makes one.",
    "schema": {"type": "string"},
}


def header_ref(name: str, *, required: bool = False) -> dict[str, Any]:
    # OpenAPI 3.0 lets a $ref carry nothing else: Retry-After, required on a 429 only, is a
    # header object of its own there.
    if required and not HEADERS[name].get("required"):
        return {**HEADERS[name], "required": True}
    return {"$ref": f"#/components/headers/{name}"}


def response_headers(code: str, *, keyed: bool) -> dict[str, Any]:
    """The contract's headers on one response: ``X-Request-ID`` on all; ``RateLimit-*`` on those
    of a keyed operation (absent when the key was refused, or Redis is unreachable);
    ``Retry-After`` on every 429, and on a 502 or 503 that knows when to come back."""
    headers = {"X-Request-ID": header_ref("X-Request-ID")}
    if keyed:
        headers |= {name: header_ref(name) for name in RATE_LIMIT_HEADERS}
    if code == "429":
        headers["Retry-After"] = header_ref("Retry-After", required=True)
    elif code in {"502", "503"}:
        headers["Retry-After"] = header_ref("Retry-After")
    return headers


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.JSONField):
    """A JSON object in an answer (a conversation's metadata, an audit entry's changes): in the
    schema an object, not any JSON value (``{}``), which a generated client typed as Any."""


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
    error_schema = copy.deepcopy(ERROR_DETAIL_SCHEMA)
    error_schema["properties"]["code"]["enum"] = sorted({*ERROR_CODES, PolicyBlocked.code})
    components.setdefault("schemas", {})["Error"] = copy.deepcopy(ERROR_SCHEMA)
    components["schemas"]["ErrorDetail"] = error_schema
    components["headers"] = copy.deepcopy(HEADERS)
    components["parameters"] = {"RequestId": copy.deepcopy(REQUEST_ID_PARAMETER)}
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            parameters = operation.setdefault("parameters", [])
            parameters.append({"$ref": "#/components/parameters/RequestId"})
            codes = list(ERRORS_BY_METHOD.get(method, []))
            if not operation.get("security"):
                # Without a key there is no role to lack (403), and the token exchange names no
                # object (404) and changes none (409): it never answers them.
                codes = [code for code in codes if code not in {"403", "404", "409"}]
            if not operation.get("security") and path.endswith("/health"):
                codes = []
                # The same report as the 200's (the view says so), with the database's check
                # failed; it was replaced by a bare object here.
                responses.setdefault("503", {"content": copy.deepcopy(responses["200"]["content"])})
                responses["503"]["description"] = "The database does not answer."
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
            keyed = any("bearer" in option for option in operation.get("security", []))
            for code, response in responses.items():
                response["headers"] = {
                    **response_headers(code, keyed=keyed),
                    **response.get("headers", {}),
                }
    return result


def add_async_views(endpoints: list[tuple[Any, ...]], **_: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular documents DRF views only; the async chat view is described by a
    schema-only DRF view (:class:`conversations.chat_api.ChatSchemaView`)."""
    from conversations.chat_api import ChatSchemaView

    callback = ChatSchemaView.as_view()
    return [*endpoints, ("/v1/chat", r"^v1/chat$", "POST", callback)]

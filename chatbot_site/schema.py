"""OpenAPI additions: the bearer auth scheme, the error envelope on every operation, and the
headers the contract names on every response."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from chatbot_site.errors import STATUS_CODES

if TYPE_CHECKING:
    from chatbot_site.strict import StrictInput

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

DESCRIPTIONS = {
    "400": "invalid_request / validation_error",
    "401": "authentication_failed",
    "403": "permission_denied (the key's role does not allow this)",
    "404": "not_found (also: another tenant's object)",
    "409": "conflict",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "429": "rate_limited (with Retry-After) / quota_exceeded",
    "500": "internal_error",
    "503": "service_unavailable (the database does not answer; with Retry-After)",
}
# A view answers 409 when a create or a rename takes a name another object of the tenant has.
NAME_TAKEN = OpenApiResponse(description="conflict: another one of the tenant's has this name")


def error_statuses(operation: dict[str, Any], view: type | None) -> set[str]:
    """The errors every operation of its kind can answer, from what it is: any can fail (500)
    or find the database gone (503); one that takes a query or a body can get them invalid
    (400), a body too large (413) or of a media type it does not parse (415); a path naming an
    object can name a missing one or another tenant's (404); a keyed one can have its key
    refused (401) or over its rate limit (429), and its view's role lacked (403) when it needs
    an admin key. What a view answers beyond these (a conflict, a bot named in the body, a
    provider failing) it declares in its own ``@extend_schema`` responses."""
    from tenants.models import Role

    codes = {"500", "503"}
    located = {parameter.get("in") for parameter in operation.get("parameters", [])}
    if "requestBody" in operation:
        codes |= {"400", "413", "415"}
    if "query" in located:
        codes.add("400")
    if "path" in located:
        codes.add("404")
    if any("bearer" in option for option in operation.get("security", [])):
        codes |= {"401", "429"}
        if getattr(view, "required_role", None) == Role.ADMIN:
            codes.add("403")
    return codes


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
        "description": "Requests the key may send now (a token bucket: a burst of the limit, "
        "then one request every 60/limit seconds; no window).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the key may send one request more than "
        "RateLimit-Remaining says (0 when nothing is used); on a 429, equal to Retry-After.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Location": {
        "description": "The path of the object the request created (`/v1/bots/{id}`, ...); on a "
        "document's 202, the path its status is read at (`/v1/documents/{id}`).",
        "schema": {"type": "string"},
    },
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# The 202s that name the document they queued: an upload's or a URL's (records, several
# documents, answer without one).
LOCATED_202 = frozenset({"documents_create"})
# Operations that take their key in the body, not in Authorization: keyed requests all the same,
# whose answers carry the key's RateLimit-* (the token exchange).
KEYED_BY_BODY = frozenset({"auth_token"})
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


def response_headers(code: str, *, keyed: bool, operation_id: str = "") -> dict[str, Any]:
    """The contract's headers on one response: ``X-Request-ID`` on all; ``RateLimit-*`` on those
    of a keyed operation (absent when the key was refused, or Redis is unreachable);
    ``Retry-After`` on every 429, and on a 502 or 503 that knows when to come back;
    ``Location`` on every 201 and on a document's 202 (not a batch of records')."""
    headers = {"X-Request-ID": header_ref("X-Request-ID")}
    if code == "201":
        headers["Location"] = header_ref("Location", required=True)
    elif code == "202" and operation_id in LOCATED_202:
        headers["Location"] = header_ref("Location")
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


class UnsetAsNullField(serializers.CharField):
    """A name that may be unset (a bot's ``model``, a message's): stored blank, ``null`` in
    answers, and ``null`` or ``""`` in a request unsets it. It read ``""``, which is no name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, allow_blank=True, **kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, ""
        return super().validate_empty_values(data)

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]  # null
        return str(value) if value else None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`cbk_...`) or a JWT from `POST /v1/auth/token`.",
        }


def add_error_responses(result: dict[str, Any], generator: Any = None, **_: Any) -> dict[str, Any]:
    from conversations.guardrails import PolicyBlocked  # chat's 502 when an answer is withheld

    components = result.setdefault("components", {})
    error_schema = copy.deepcopy(ERROR_DETAIL_SCHEMA)
    error_schema["properties"]["code"]["enum"] = sorted({*ERROR_CODES, PolicyBlocked.code})
    components.setdefault("schemas", {})["Error"] = copy.deepcopy(ERROR_SCHEMA)
    components["schemas"]["ErrorDetail"] = error_schema
    components["headers"] = copy.deepcopy(HEADERS)
    components["parameters"] = {"RequestId": copy.deepcopy(REQUEST_ID_PARAMETER)}
    ref = {"$ref": "#/components/schemas/Error"}
    views = {
        (path, method.lower()): getattr(callback, "cls", None)
        for path, _regex, method, callback in getattr(generator, "endpoints", None) or []
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            parameters = operation.setdefault("parameters", [])
            parameters.append({"$ref": "#/components/parameters/RequestId"})
            for code in sorted(error_statuses(operation, views.get((path, method)))):
                responses.setdefault(
                    code,
                    {
                        "description": DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
            # An error a view documents with a description only (chat's 409 and 502, a 409 of
            # a name taken) has the envelope as its body too.
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and "content" not in response:
                    response["content"] = {"application/json": {"schema": ref}}
            operation["responses"] = responses = dict(sorted(responses.items()))
            keyed = operation.get("operationId") in KEYED_BY_BODY or any(
                "bearer" in option for option in operation.get("security", [])
            )
            for code, response in responses.items():
                response["headers"] = {
                    **response_headers(
                        code, keyed=keyed, operation_id=operation.get("operationId", "")
                    ),
                    **response.get("headers", {}),
                }
    return result


# Request objects that refuse a field they do not know (``400``, ``details.<object>.<name>``).
CLOSED_REQUEST_SCHEMAS = ("ChatFiltersRequest",)


def strict_bodies() -> list[type[StrictInput]]:
    """Every request serializer that refuses a field it does not know (``refuse_unknown``)."""
    from chatbot_site.strict import StrictInput

    found: list[type[StrictInput]] = []
    todo = list(StrictInput.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.refuse_unknown:
            found.append(cls)
    return found


def close_request_objects(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """``additionalProperties: false`` on :data:`CLOSED_REQUEST_SCHEMAS` and on every JSON body
    that refuses an unknown field (``StrictInput.refuse_unknown``): the schema said any other
    key was allowed, which a generated client then sent and got a 400 for (``filters``; a
    bot's ``is_actve`` was valid by the schema, 2026-12-08). The read-only fields such a body
    takes back and ignores (``echoed``: a resource sent back as it was read) are listed as
    ``readOnly`` properties, so that a body sent back as read stays valid."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in CLOSED_REQUEST_SCHEMAS:
        schemas[name]["additionalProperties"] = False
    for cls in strict_bodies():
        for name in (f"{cls.__name__}Request", f"Patched{cls.__name__}Request"):
            if name not in schemas:
                continue
            body = schemas[name]
            body["additionalProperties"] = False
            properties = body.setdefault("properties", {})
            for field in sorted(set(cls.echoed) - set(properties)):
                properties[field] = {
                    "readOnly": True,
                    "description": "As read; sent back, it is ignored.",
                }
    return result


def add_async_views(endpoints: list[tuple[Any, ...]], **_: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular documents DRF views only; the async chat view is described by a
    schema-only DRF view (:class:`conversations.chat_api.ChatSchemaView`)."""
    from conversations.chat_api import ChatSchemaView

    callback = ChatSchemaView.as_view()
    return [*endpoints, ("/v1/chat", r"^v1/chat$", "POST", callback)]

"""The base of every authenticated API view: the tenant comes from the key, once, here.

``TenantApi`` authenticates (API key or JWT), checks the key's role, applies the key's rate limit
(headers on every keyed response, ``429`` + ``Retry-After`` when over), and offers
``self.tenant``, ``self.api_key`` and ``self.actor`` to the view. Views reach rows only through
``Model.objects.for_tenant(self.tenant)`` — via :meth:`TenantApi.scoped` and
:meth:`TenantApi.get_object` — so a view cannot see another tenant's rows, and another tenant's
object is the same ``404`` as a missing one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request
from rest_framework.response import Response

from chatbot_site import ratelimit
from chatbot_site.errors import AuthenticationFailed, NotFound, PermissionDenied, RateLimited
from chatbot_site.options import AllowOptions
from tenants.authentication import (
    ApiKeyAuthentication,
    KeyPrincipal,
    client_ip,
    failure_guard,
    too_many_failures,
)
from tenants.models import ActorType, ApiKey, Role, Tenant
from tenants.services import Actor

M = TypeVar("M", bound=Model)
S = TypeVar("S", bound=serializers.Serializer)


@dataclass
class Access:
    """Who is calling: the key, its tenant, the audit actor, and the rate-limit headers that go
    on every response to the request."""

    api_key: ApiKey
    tenant: Tenant
    actor: Actor
    rate_headers: dict[str, str] = field(default_factory=dict)


def admit(principal: KeyPrincipal, request: HttpRequest, *, required_role: str) -> Access:
    """Rate limit, then role: ``429`` (with headers; without, for an address past its failed
    credentials) or ``403``, else the caller's access."""
    api_key = principal.api_key
    access = Access(
        api_key=api_key,
        tenant=principal.tenant,
        actor=Actor(
            type=ActorType.API_KEY,
            id=str(api_key.id),
            label=api_key.name or api_key.prefix,
            ip=client_ip(request),
            request_id=getattr(request, "request_id", "") or "",
        ),
    )
    default = access.tenant.default_rate_limit_per_minute
    limit = api_key.rate_limit_per_minute or default
    # A key made by a key limited to some bots takes from that key's bucket too (its limit
    # shared by all the keys it made: they did not multiply it).
    budget = api_key.rate_budget
    shared = (
        None if budget is None else (f"key:{budget.id}", budget.rate_limit_per_minute or default)
    )
    # In the same round trip: an address past its failed credentials is refused good ones too.
    decision = ratelimit.hit(
        f"key:{api_key.id}", limit=limit, guard=failure_guard(request), shared=shared
    )
    if decision.guarded:
        raise too_many_failures(decision)
    access.rate_headers = decision.headers()
    if not decision.allowed:
        wait = decision.retry_after_seconds
        message = f"Rate limit of {limit} requests per minute exceeded; retry in {wait} s."
        details: dict[str, object] = {"limit": limit, "retry_after": wait}
        if decision.shared and shared is not None:
            message = (
                f"Rate limit of {shared[1]} requests per minute, shared with the key that created "
                f"this one and the other keys it created, exceeded; retry in {wait} s."
            )
            details = {"limit": shared[1], "retry_after": wait, "shared": True}
        raise RateLimited(message, details=details, headers=access.rate_headers)
    if required_role == Role.ADMIN and api_key.role != Role.ADMIN:
        raise PermissionDenied("This endpoint needs an admin key.", headers=access.rate_headers)
    return access


def authorize(request: HttpRequest, *, required_role: str) -> Access:
    """:class:`TenantApi`'s checks for views outside DRF (the async chat view)."""
    result = ApiKeyAuthentication().authenticate(request)  # type: ignore[arg-type]
    if result is None:
        raise AuthenticationFailed("Authentication credentials were not provided.")
    return admit(result[0], request, required_role=required_role)


class TenantApi(AllowOptions):
    authentication_classes = [ApiKeyAuthentication]
    #: The role a key needs; ``chat`` views are open to admin keys too.
    required_role: str = Role.ADMIN

    tenant: Tenant
    api_key: ApiKey
    actor: Actor

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions (authenticated)
        principal = request.user
        if not isinstance(principal, KeyPrincipal):  # pragma: no cover - IsAuthenticated ran
            raise PermissionDenied()
        try:
            access = admit(principal, request, required_role=self.required_role)
        except (RateLimited, PermissionDenied) as exc:
            self._rate_headers = exc.headers
            raise
        self.api_key, self.tenant, self.actor = access.api_key, access.tenant, access.actor
        self._rate_headers = access.rate_headers

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # An error's own headers win, as on /v1/chat: a quota's 429 says RateLimit-Remaining 0
        # (the key's count of requests said otherwise).
        for name, value in getattr(self, "_rate_headers", {}).items():
            response.setdefault(name, value)
        return response

    # --- tenant-scoped access ------------------------------------------------------------

    def scoped(self, model: type[M]) -> QuerySet[M]:
        return model.objects.for_tenant(self.tenant)  # type: ignore[attr-defined]

    def get_object(self, model: type[M], pk: Any, *, queryset: QuerySet[M] | None = None) -> M:
        """This tenant's ``model`` row ``pk``, else ``404`` — also when it is another tenant's."""
        # A model may name itself for clients (ApiKey: "API key", not Django's "Api key").
        label = getattr(model, "api_name", "") or str(model._meta.verbose_name or "object")
        label = label[:1].upper() + label[1:]
        try:
            uuid.UUID(str(pk))
        except ValueError:
            raise NotFound(f"{label} not found.") from None
        qs = queryset if queryset is not None else self.scoped(model)
        try:
            return qs.get(pk=pk)
        except model.DoesNotExist:  # type: ignore[attr-defined]
            raise NotFound(f"{label} not found.") from None

    def validated(self, serializer_class: type[S], data: Any, **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data, context={"tenant": self.tenant}, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def located(response: Response, route: str, pk: Any) -> Response:
    """``response`` with ``Location``: the path of the object its request created (RFC 9110
    15.3.2: a ``201`` names what it created; a document's ``202`` names where its status is
    read). Relative to the host the client called, so no host header is trusted for it."""
    response["Location"] = reverse(route, args=[str(pk)])
    return response


@extend_schema(exclude=True)
class UnknownPathApi(TenantApi):
    """Any ``/v1`` path no view serves: ``404 not_found`` — after the credentials, when a request
    sends some, so that a keyed request carries its ``RateLimit-*`` headers like every other
    (and a bad key is the ``401`` it is everywhere). Without credentials it is a plain 404."""

    required_role = Role.CHAT

    @property
    def default_response_headers(self) -> dict[str, str]:
        # No Allow: it said "OPTIONS", a method this path answers 404 to as to any other.
        return {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if get_authorization_header(request):
            super().initial(request, *args, **kwargs)
        raise NotFound("Not found.")

"""``Authorization: Bearer <api key>`` for DRF.

Lookup by the key's public prefix (unique index), then a constant-time comparison of the
SHA-256 of what was sent with the stored hash. Inactive tenants, revoked and expired keys fail
at once. JWT exchange, ``last_used_at`` and roles build on this (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import structlog
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.keys import key_matches, parse_key
from tenants.models import ApiKey, Tenant


@dataclass(frozen=True)
class KeyPrincipal:
    """``request.user`` for API-key requests: the key and its tenant, never a Django user."""

    api_key: ApiKey

    @property
    def tenant(self) -> Tenant:
        return self.api_key.tenant

    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise exceptions.AuthenticationFailed("Expected 'Authorization: Bearer <api key>'.")
        credential = credential.strip()
        prefix = parse_key(credential)
        if prefix is None:
            return None if credential.count(".") == 2 else self._fail()  # a JWT: next backend
        key = ApiKey.all_tenants.select_related("tenant").filter(prefix=prefix).first()
        if key is None or not key_matches(credential, key.key_hash):
            self._fail()
        now = timezone.now()
        if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
            self._fail()
        if not key.tenant.is_active:
            self._fail()
        # From here on every log line of this request names its tenant and key.
        structlog.contextvars.bind_contextvars(tenant_id=str(key.tenant_id), api_key_id=str(key.id))
        return KeyPrincipal(key), key

    def _fail(self) -> NoReturn:
        # One message for every failure: which part was wrong is not the caller's business.
        raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

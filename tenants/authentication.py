"""``Authorization: Bearer <api key | JWT>`` for DRF.

API keys: lookup by the public prefix (unique index), then a constant-time comparison of the
SHA-256 of what was sent with the stored hash. JWTs (from ``POST /v1/auth/token``): signature
(the current key's, or a retired one's during a rotation: ``JWT_SIGNING_KEY_FALLBACKS``),
algorithm (HS256 only, so ``alg: none`` fails), expiry and audience are checked, then the key
named in the token is loaded — so revoking the key, or deactivating its tenant, ends its tokens
at once. Every failure is the same 401; which part was wrong is not the caller's business, but
the request's log lines say it (``auth_failure``, and ``api_key_prefix`` where a key was named).

Failed credentials that could be guesses are counted per client address, in the bucket the
token exchange counts in (``AUTH_FAILURES_PER_MINUTE``): past it a failure is ``429``, and so is
a good credential from that address (:func:`failure_guard`, looked at in the key's own
rate-limit round trip). A key that is right but revoked or expired, a tenant deactivated, a JWT
we signed that has expired or names a key that is gone: no guess, since it took the secret to
make, and a client retrying one (an expired JWT, every few seconds) behind an address it shares
with others (an office's NAT) would lock them all out. Those are 401 and not counted.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
import structlog
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from chatbot_site import ratelimit
from chatbot_site.lookups import Lookup
from tenants.keys import key_matches, parse_key
from tenants.models import ApiKey, Tenant

if TYPE_CHECKING:
    from chatbot_site.errors import RateLimited

FAILURE = "Invalid, revoked or expired credentials."

# Every API request runs one of these: their SQL is written once (chatbot_site.lookups).
# With the key whose rate limit it shares (``ApiKey.rate_budget``), if any: admitted by both.
KEY_BY_PREFIX: Lookup[ApiKey] = Lookup(
    ApiKey, 't0."prefix" = %s', related=("tenant", "rate_budget")
)
KEY_BY_ID: Lookup[ApiKey] = Lookup(
    ApiKey, 't0."id" = %s AND t0."tenant_id" = %s', related=("tenant", "rate_budget")
)


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address the trusted proxies (``NUM_PROXIES``) saw."""
    if settings.NUM_PROXIES > 0:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [p for p in forwarded if p]
        if len(forwarded) >= settings.NUM_PROXIES:
            return forwarded[-settings.NUM_PROXIES]
    return request.META.get("REMOTE_ADDR") or None


def failure_guard(request: HttpRequest) -> tuple[str, int]:
    """The rate-limit bucket of failed credentials from this request's address, and its limit:
    the token exchange's and every Bearer request's."""
    return f"authfail:{client_ip(request) or 'unknown'}", settings.AUTH_FAILURES_PER_MINUTE


# Failures that could be guesses (the secret or the signature wrong, or no credential at all).
GUESSES = frozenset({"malformed_header", "malformed_credential", "unknown_key", "wrong_secret",
                     "jwt_bad_signature", "jwt_malformed", "jwt_invalid"})  # fmt: skip


def count_failure(request: HttpRequest) -> ratelimit.Decision:
    """One more failed credential from the request's address."""
    bucket, limit = failure_guard(request)
    return ratelimit.hit(bucket, limit=limit)


def too_many_failures(decision: ratelimit.Decision) -> RateLimited:
    """The ``429`` of an address past its failed credentials. A good key refused so
    (``decision.guarded``) is a keyed request: it carries the key's ``RateLimit-Limit``, with
    nothing remaining until ``Retry-After`` (it carried no ``RateLimit-*`` at all)."""
    # Imported here: chatbot_site.errors imports DRF, whose settings import this module.
    from chatbot_site.errors import RateLimited

    retry_after = str(max(1, decision.retry_after_seconds))
    return RateLimited(
        "Too many failed attempts from this address; try again later.",
        details={"retry_after": decision.retry_after_seconds},
        headers=decision.headers() if decision.guarded else {"Retry-After": retry_after},
    )


class Failed(Exception):
    """A credential refused, with why (logged as ``auth_failure``, never told to the client)
    and the key prefix it named, if any."""

    def __init__(self, reason: str, prefix: str | None = None, message: str = "") -> None:
        super().__init__(reason)
        self.reason, self.prefix, self.message = reason, prefix, message or FAILURE


@dataclass(frozen=True)
class KeyPrincipal:
    """``request.user`` for API requests: the key and its tenant, never a Django user."""

    api_key: ApiKey
    via: str = "api_key"  # or "jwt"
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def tenant(self) -> Tenant:
        return self.api_key.tenant

    @property
    def is_authenticated(self) -> bool:
        return True


def key_problem(key: ApiKey, now: dt.datetime) -> str | None:
    """Why ``key`` (its tenant loaded) no longer authenticates — ``key_revoked``,
    ``key_expired``, ``tenant_inactive`` — or None. For the logs: the client is told none of it."""
    if key.revoked_at is not None:
        return "key_revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "key_expired"
    if not key.tenant.is_active:
        return "tenant_inactive"
    return None


def key_for(credential: str) -> ApiKey:
    """The usable key (its tenant loaded) that the API key ``credential`` is, else
    :class:`Failed` with why: for Bearer keys and the token exchange alike."""
    prefix = parse_key(credential)
    if prefix is None:
        raise Failed("malformed_credential")
    key = KEY_BY_PREFIX.get(prefix)
    if key is None:
        raise Failed("unknown_key", prefix)
    if not key_matches(credential, key.key_hash):
        raise Failed("wrong_secret", prefix)
    if (problem := key_problem(key, timezone.now())) is not None:
        raise Failed(problem, prefix)
    return key


def note_failure(request: HttpRequest, failed: Failed) -> None:
    """A refused credential: its reason on the request's log lines, counted against the
    address if it could be a guess, and ``429`` (raised) once the address is past its limit."""
    named = {"api_key_prefix": failed.prefix} if failed.prefix else {}
    structlog.contextvars.bind_contextvars(auth_failure=failed.reason, **named)
    if failed.reason in GUESSES and not (counted := count_failure(request)).allowed:
        raise too_many_failures(counted) from None


def touch_last_used(key: ApiKey, now: dt.datetime) -> None:
    """Keep ``last_used_at`` to the minute without a write per request: one conditional UPDATE
    when the stored value is older than ``API_KEY_LAST_USED_RESOLUTION``."""
    resolution = dt.timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if key.last_used_at is not None and now - key.last_used_at < resolution:
        return
    ApiKey.all_tenants.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - resolution)
    ).update(last_used_at=now)
    key.last_used_at = now


def issue_token(key: ApiKey) -> tuple[str, int]:
    """A short-lived access token for ``key``: never outlives the key's own expiry."""
    now = timezone.now()
    lifetime = dt.timedelta(seconds=settings.JWT_ACCESS_TOKEN_SECONDS)
    if key.expires_at is not None:
        lifetime = min(lifetime, key.expires_at - now)
    token = AccessToken()
    token.set_exp(from_time=now, lifetime=lifetime)
    token["key_id"] = str(key.id)
    token["tenant_id"] = str(key.tenant_id)
    token["role"] = key.role
    return str(token), max(0, int(lifetime.total_seconds()))


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            # Every view with this authenticator needs a key: this request ends in a 401.
            structlog.contextvars.bind_contextvars(auth_failure="missing_credentials")
            return None
        try:
            principal = self._principal(header)
        except Failed as failed:
            note_failure(request, failed)
            raise exceptions.AuthenticationFailed(failed.message) from None
        key = principal.api_key
        touch_last_used(key, timezone.now())
        # From here on every log line of this request names its tenant and key.
        structlog.contextvars.bind_contextvars(tenant_id=str(key.tenant_id), api_key_id=str(key.id))
        return principal, key

    def _principal(self, header: str) -> KeyPrincipal:
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Failed("malformed_header", message="Expected 'Authorization: Bearer <api key>'.")
        if parse_key(credential) is not None:
            return KeyPrincipal(key_for(credential))
        if credential.count(".") != 2:
            raise Failed("malformed_credential")
        key, claims = self._by_token(credential)
        if (problem := key_problem(key, timezone.now())) is not None:
            raise Failed(problem, key.prefix)
        return KeyPrincipal(key, via="jwt", claims=claims)

    def _by_token(self, credential: str) -> tuple[ApiKey, dict[str, Any]]:
        try:
            token = access_token(credential)
        except TokenError as exc:
            raise Failed(_token_problem(exc)) from None
        claims = dict(token.payload)
        key_id, tenant_id = claims.get("key_id"), claims.get("tenant_id")
        key = (
            KEY_BY_ID.get(uuid.UUID(key_id), uuid.UUID(tenant_id))
            if _is_uuid(key_id) and _is_uuid(tenant_id)
            else None
        )
        if key is None:
            raise Failed("jwt_unknown_key")
        return key, claims

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def access_token(credential: str) -> AccessToken:
    """The access token ``credential`` (signature, algorithm, expiry, token type, audience
    checked), signed with the current key or one a rotation retired
    (``JWT_SIGNING_KEY_FALLBACKS``), else :class:`TokenError`. Only a signature that is not the
    current key's tries the retired ones: a token of ours costs nothing more."""
    try:
        return AccessToken(credential)  # type: ignore[arg-type]
    except TokenError as exc:
        if _token_problem(exc) != "jwt_bad_signature":
            raise
        for retired in _retired_key_tokens(tuple(settings.JWT_SIGNING_KEY_FALLBACKS)):
            try:
                return retired(credential)  # type: ignore[arg-type]
            except TokenError as again:
                if _token_problem(again) != "jwt_bad_signature":
                    raise
        raise


@functools.cache
def _retired_key_tokens(keys: tuple[str, ...]) -> tuple[type[AccessToken], ...]:
    """An access token class per retired key: simplejwt's, verifying with that key."""
    jwt_settings = simplejwt_settings.api_settings
    return tuple(
        type(
            "RetiredKeyAccessToken",
            (AccessToken,),
            {
                "_token_backend": TokenBackend(
                    jwt_settings.ALGORITHM,
                    key,
                    "",
                    jwt_settings.AUDIENCE,
                    jwt_settings.ISSUER,
                    None,
                    jwt_settings.LEEWAY,
                    jwt_settings.JSON_ENCODER,
                )
            },
        )
        for key in keys
    )


def _token_problem(exc: TokenError) -> str:
    """simplejwt says only "invalid" or "expired"; PyJWT's error, under it, says more."""
    if isinstance(exc, ExpiredTokenError):
        return "jwt_expired"
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, jwt.InvalidTokenError):
        cause = cause.__cause__
    if isinstance(cause, jwt.InvalidSignatureError):
        return "jwt_bad_signature"
    if isinstance(cause, jwt.DecodeError):
        return "jwt_malformed"
    return "jwt_invalid"  # algorithm, audience, token type, a claim missing


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True

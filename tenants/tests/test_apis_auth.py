from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tenants.authentication import issue_token
from tenants.models import ApiKey, AuditLog
from tenants.tests.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

ADMIN_ONLY = "/v1/scopes"


def bearer(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


def exchange(client: APIClient, api_key: str, **extra):
    return client.post("/v1/auth/token", {"api_key": api_key}, format="json", **extra)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_token_exchange_returns_the_contract_shape(api_client):
    key = ApiKeyFactory()
    response = exchange(api_client, key.plaintext)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    claims = AccessToken(body["access_token"]).payload
    assert (claims["key_id"], claims["tenant_id"], claims["role"]) == (
        str(key.id), str(key.tenant_id), key.role,
    )  # fmt: skip
    assert response["Cache-Control"] == "no-store"


def test_token_exchange_is_a_request_of_its_key_rate_limited_with_its_headers(api_client):
    """API.md: limits are per key and every keyed response carries RateLimit-*; a 429 carries
    Retry-After. The exchange was neither counted nor told: a key at its limit was refused
    everywhere but here, where it got fresh tokens without end."""
    key = ApiKeyFactory(rate_limit_per_minute=1)
    first = exchange(api_client, key.plaintext)
    assert first.status_code == 200
    assert (first["RateLimit-Limit"], first["RateLimit-Remaining"]) == ("1", "0")
    second = exchange(api_client, key.plaintext)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second["Retry-After"]) >= 1
    assert second["RateLimit-Remaining"] == "0"
    assert second["RateLimit-Reset"] == second["Retry-After"]
    # One bucket: the key's Bearer requests are past the limit too.
    assert bearer(key.plaintext).get(ADMIN_ONLY).status_code == 429


def test_jwt_is_accepted_wherever_the_key_is(api_client):
    key = ApiKeyFactory()
    token = exchange(api_client, key.plaintext).json()["access_token"]
    assert bearer(token).get(ADMIN_ONLY).status_code == 200


def test_token_never_outlives_its_key(api_client):
    key = ApiKeyFactory(expires_at=timezone.now() + dt.timedelta(seconds=120))
    body = exchange(api_client, key.plaintext).json()
    assert 100 <= body["expires_in"] <= 120


@pytest.mark.parametrize("bad", ["", "cbk_nope", "cbk_0123456789ab_" + "x" * 43])
def test_exchange_with_a_bad_key_is_401(api_client, bad):
    response = exchange(api_client, bad)
    assert response.status_code in {400, 401}
    assert response.json()["error"]["code"] in {"authentication_failed", "validation_error"}


def test_revoking_a_key_ends_its_jwts_at_once(api_client):
    key = ApiKeyFactory()
    token = exchange(api_client, key.plaintext).json()["access_token"]
    other_admin = ApiKeyFactory(tenant=key.tenant)
    revoked = bearer(other_admin.plaintext).delete(f"/v1/api-keys/{key.id}")
    assert revoked.status_code == 204
    assert bearer(token).get(ADMIN_ONLY).status_code == 401
    assert bearer(key.plaintext).get(ADMIN_ONLY).status_code == 401
    assert exchange(api_client, key.plaintext).status_code == 401


def test_deactivating_the_tenant_ends_its_jwts(api_client):
    key = ApiKeyFactory()
    token = exchange(api_client, key.plaintext).json()["access_token"]
    key.tenant.is_active = False
    key.tenant.save(update_fields=["is_active"])
    assert bearer(token).get(ADMIN_ONLY).status_code == 401


def tamper(token: str, **claims) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    return f"{header}.{b64(data)}.{signature}"


def test_tampered_expired_unsigned_and_malformed_jwts_are_401():
    victim = ApiKeyFactory()
    attacker = ApiKeyFactory()
    token, _ = issue_token(attacker)
    payload = AccessToken(token).payload

    expired = AccessToken()
    expired.set_exp(
        from_time=timezone.now() - dt.timedelta(hours=1), lifetime=dt.timedelta(minutes=1)
    )
    for claim in ("key_id", "tenant_id", "role"):
        expired[claim] = payload[claim]

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({**payload, 'key_id': str(victim.id)})}."
    candidates = {
        "claims swapped to another key": tamper(
            token, key_id=str(victim.id), tenant_id=str(victim.tenant_id)
        ),
        "role raised": tamper(token, role="admin"),
        "alg none": unsigned,
        "expired": str(expired),
        "wrong secret": _signed_with("not-our-secret-but-long-enough-for-hs256!", payload),
        "garbage": "a.b.c",
        "not base64": "@@.@@.@@",
    }
    for name, credential in candidates.items():
        response = bearer(credential).get(ADMIN_ONLY)
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "authentication_failed", name


def _signed_with(secret: str, payload: dict) -> str:
    import jwt

    return jwt.encode(dict(payload), secret, algorithm="HS256")


def test_failed_exchanges_are_rate_limited_per_client_ip(api_client, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    statuses = [exchange(api_client, "cbk_0123456789ab_" + "x" * 43).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    blocked = exchange(api_client, ApiKeyFactory().plaintext)
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    assert blocked.json()["error"]["code"] == "rate_limited"
    # Another address is not affected.
    other = exchange(api_client, ApiKeyFactory().plaintext, REMOTE_ADDR="10.9.8.7")
    assert other.status_code == 200


def test_chat_keys_cannot_use_admin_endpoints():
    chat = ApiKeyFactory(role="chat")
    for path in (
        "/v1/bots",
        "/v1/scopes",
        "/v1/datasets",
        "/v1/api-keys",
        "/v1/usage",
        "/v1/audit-logs",
    ):
        response = bearer(chat.plaintext).get(path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
    assert bearer(chat.plaintext).get("/v1/conversations").status_code == 200


def test_last_used_at_is_kept_without_a_write_per_request(django_assert_num_queries):
    key = ApiKeyFactory()
    client = bearer(key.plaintext)
    assert client.get(ADMIN_ONLY).status_code == 200
    first = ApiKey.all_tenants.get(pk=key.pk).last_used_at
    assert first is not None
    # Within the resolution: key lookup + the page, and no UPDATE.
    with django_assert_num_queries(2) as captured:
        client.get(ADMIN_ONLY)
    assert not any(q["sql"].startswith("UPDATE") for q in captured.captured_queries)
    assert ApiKey.all_tenants.get(pk=key.pk).last_used_at == first


def test_api_key_secret_is_shown_once_and_revocation_is_audited():
    admin = ApiKeyFactory()
    client = bearer(admin.plaintext)
    created = client.post("/v1/api-keys", {"name": "widget", "role": "chat"}, format="json")
    assert created.status_code == 201
    secret = created.json()["api_key"]
    assert secret.startswith("cbk_")
    listing = client.get("/v1/api-keys").content.decode()
    assert secret not in listing and "key_hash" not in listing and '"api_key"' not in listing
    key_id = created.json()["id"]
    assert client.get(f"/v1/api-keys/{key_id}").status_code == 405
    assert client.delete(f"/v1/api-keys/{key_id}").status_code == 204
    actions = list(
        AuditLog.objects.for_tenant(admin.tenant)
        .filter(target_id=key_id)
        .values_list("action", "actor_id")
    )
    assert sorted(actions) == [("api_key.create", str(admin.id)), ("api_key.revoke", str(admin.id))]
    assert secret not in json.dumps(
        list(AuditLog.objects.for_tenant(admin.tenant).values("changes"))
    )


def _forged_jwt():
    payload = AccessToken(issue_token(ApiKeyFactory())[0]).payload
    return _signed_with("not-our-secret-but-long-enough-for-hs256!", payload)


@pytest.mark.parametrize("bad", [
    pytest.param(_forged_jwt, id="jwt with a wrong signature"),
    pytest.param(lambda: "cbk_0123456789ab_" + "x" * 43, id="unknown api key"),
])  # fmt: skip
def test_failed_bearer_credentials_are_rate_limited_per_client_ip_like_exchanges(
    api_client, settings, bad
):
    """A JWT (or key) could be tried on any /v1 route without limit: only POST /v1/auth/token
    counted failures. Failed Bearer credentials now count in the same bucket per address, and a
    blocked address is refused even a good credential, on every route and the exchange."""
    settings.AUTH_FAILURES_PER_MINUTE = 3
    good = ApiKeyFactory()
    credential = bad()
    statuses = [bearer(credential).get(ADMIN_ONLY).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    for blocked in (bearer(good.plaintext).get(ADMIN_ONLY), exchange(api_client, good.plaintext)):
        assert blocked.status_code == 429
        assert int(blocked["Retry-After"]) >= 1
        assert blocked.json()["error"]["code"] == "rate_limited"
        assert "failed attempts" in blocked.json()["error"]["message"]
    # The good key's request is a keyed one: its limit, nothing left until Retry-After (it
    # carried no RateLimit-* at all). The exchange has no key yet: Retry-After alone.
    keyed = bearer(good.plaintext).get(ADMIN_ONLY)
    assert keyed["RateLimit-Limit"] == str(good.tenant.default_rate_limit_per_minute)
    assert keyed["RateLimit-Remaining"] == "0"
    assert keyed["RateLimit-Reset"] == keyed["Retry-After"]
    # Another address is not affected.
    assert bearer(good.plaintext).get(ADMIN_ONLY, REMOTE_ADDR="10.9.8.7").status_code == 200


def test_failed_exchanges_count_against_bearer_requests_too(api_client, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 2
    good = ApiKeyFactory()
    for _ in range(2):
        assert exchange(api_client, "cbk_0123456789ab_" + "x" * 43).status_code == 401
    assert bearer(good.plaintext).get(ADMIN_ONLY).status_code == 429


def test_right_credentials_no_longer_valid_are_401_and_not_counted(api_client, settings):
    """A revoked or expired key with its right secret, an expired JWT we signed: no guesses, and
    a client retrying one (an expired JWT every few seconds) behind an address others share
    locked them all out. Each is 401 however often; a good key from there is served."""
    settings.AUTH_FAILURES_PER_MINUTE = 2
    revoked = ApiKeyFactory(revoked_at=timezone.now())
    expired_key = ApiKeyFactory(expires_at=timezone.now() - dt.timedelta(minutes=1))
    token = AccessToken(issue_token(ApiKeyFactory())[0])
    token.set_exp(lifetime=-dt.timedelta(seconds=1))
    for _ in range(3):
        assert bearer(str(token)).get(ADMIN_ONLY).status_code == 401
        for key in (revoked, expired_key):
            assert bearer(key.plaintext).get(ADMIN_ONLY).status_code == 401
            assert exchange(api_client, key.plaintext).status_code == 401
    assert bearer(ApiKeyFactory().plaintext).get(ADMIN_ONLY).status_code == 200


def test_good_credentials_do_not_count_as_failures(api_client, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 2
    good = ApiKeyFactory()
    token = exchange(api_client, good.plaintext).json()["access_token"]
    for _ in range(5):
        assert bearer(good.plaintext).get(ADMIN_ONLY).status_code == 200
        assert bearer(token).get(ADMIN_ONLY).status_code == 200

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tenants.tests.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("chatbot_site.tests.urls_errors")]

PRIVATE = "/v1/test/private"


def get(api_client, credential: str | None):
    if credential is not None:
        api_client.credentials(HTTP_AUTHORIZATION=credential)
    return api_client.get(PRIVATE)


def test_valid_key_is_accepted(api_client):
    key = ApiKeyFactory()
    assert get(api_client, f"Bearer {key.plaintext}").status_code == 200


@pytest.mark.parametrize(
    "credential",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer cbk_0123456789ab_" + "x" * 43,  # well-formed, unknown
        "Bearer not-a-key",
    ],
)
def test_missing_or_wrong_credentials_are_401(api_client, credential):
    response = get(api_client, credential)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_right_prefix_wrong_secret_is_401(api_client):
    key = ApiKeyFactory()
    forged = key.plaintext[:-4] + "AAAA"
    assert get(api_client, f"Bearer {forged}").status_code == 401


def test_revoked_key_fails_at_once(api_client):
    key = ApiKeyFactory()
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    assert get(api_client, f"Bearer {key.plaintext}").status_code == 401


def test_expired_key_fails(api_client):
    key = ApiKeyFactory(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert get(api_client, f"Bearer {key.plaintext}").status_code == 401


def test_key_of_inactive_tenant_fails(api_client):
    key = ApiKeyFactory(tenant__is_active=False)
    assert get(api_client, f"Bearer {key.plaintext}").status_code == 401


def test_log_lines_of_an_authenticated_request_name_tenant_and_key(api_client, caplog):
    import logging

    key = ApiKeyFactory()
    with caplog.at_level(logging.INFO, logger="chatbot.request"):
        get(api_client, f"Bearer {key.plaintext}")
    finished = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    line = next(m for m in finished if m.get("event") == "request_finished")
    assert line["tenant_id"] == str(key.tenant_id)
    assert line["api_key_id"] == str(key.id)
    assert line["request_id"]


def _expired_jwt(key) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken()
    token.set_exp(
        from_time=timezone.now() - dt.timedelta(hours=1), lifetime=dt.timedelta(minutes=1)
    )
    token["key_id"], token["tenant_id"] = str(key.id), str(key.tenant_id)
    return str(token)


def _wrong_signature(key) -> str:
    from tenants.authentication import issue_token

    header, payload, _ = issue_token(key)[0].split(".")
    return f"{header}.{payload}.c2lnbmVkIGJ5IHNvbWVvbmUgZWxzZQ"


def _jwt_of_a_missing_key(key) -> str:
    from tenants.authentication import issue_token

    token = issue_token(key)[0]
    key.delete()
    return token


def _revoked(key):
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    return key.plaintext


def _expired(key):
    key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    key.save(update_fields=["expires_at"])
    return key.plaintext


def _inactive_tenant(key):
    key.tenant.is_active = False
    key.tenant.save(update_fields=["is_active"])
    return key.plaintext


@pytest.mark.parametrize("credential, reason, shows_prefix", [
    (lambda key: "Bearer cbk_0123456789ab_" + "x" * 43, "unknown_key", True),
    (lambda key: f"Bearer {key.plaintext[:-4]}AAAA", "wrong_secret", True),
    (lambda key: f"Bearer {_revoked(key)}", "key_revoked", True),
    (lambda key: f"Bearer {_expired(key)}", "key_expired", True),
    (lambda key: f"Bearer {_inactive_tenant(key)}", "tenant_inactive", True),
    (lambda key: f"Bearer {_wrong_signature(key)}", "jwt_bad_signature", False),
    (lambda key: f"Bearer {_expired_jwt(key)}", "jwt_expired", False),
    (lambda key: "Bearer @@.@@.@@", "jwt_malformed", False),
    (lambda key: f"Bearer {_jwt_of_a_missing_key(key)}", "jwt_unknown_key", False),
    (lambda key: "Bearer not-a-key", "malformed_credential", False),
    (lambda key: "Basic dXNlcjpwYXNz", "malformed_header", False),
    (lambda key: "Bearer", "malformed_header", False),
    (lambda key: None, "missing_credentials", False),
])  # fmt: skip
def test_a_401_is_logged_with_its_reason_and_the_client_is_told_nothing_more(
    api_client, caplog, credential, reason, shows_prefix
):
    import logging

    key = ApiKeyFactory()
    sent = credential(key)
    with caplog.at_level(logging.INFO, logger="chatbot.request"):
        response = get(api_client, sent)
    assert response.status_code == 401
    assert response.json()["error"]["message"] in {
        "Invalid, revoked or expired credentials.",
        "Expected 'Authorization: Bearer <api key>'.",
        "Authentication credentials were not provided.",
    }
    line = next(
        r.msg for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "request_finished"
    )  # fmt: skip
    assert (line["status"], line["auth_failure"]) == (401, reason)
    if shows_prefix:
        assert line["api_key_prefix"] == sent.split("_")[1]
    else:
        assert "api_key_prefix" not in line
    everything = repr([r.msg for r in caplog.records]) + caplog.text
    secret = (sent or "").removeprefix("Bearer ").partition("_")[2].partition("_")[2]
    if secret:
        assert secret not in everything
    assert "tenant_id" not in line and "api_key_id" not in line

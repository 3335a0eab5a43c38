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

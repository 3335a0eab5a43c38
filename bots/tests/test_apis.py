from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tenants.models import AuditLog
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def side():
    return build_tenant("acme")


def test_scope_create_defaults_and_validation(side):
    client = side.client()
    created = client.post("/v1/scopes", {"name": "Billing"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["pii_entities"] == ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS"]
    assert body["answer_without_context"] is False
    bad = client.post(
        "/v1/scopes",
        {"name": "x", "min_relevance": 1.5, "pii_entities": ["PASSPORT"]},
        format="json",
    )
    assert bad.status_code == 400
    details = bad.json()["error"]["details"]
    assert "min_relevance" in details
    assert any(field.startswith("pii_entities") for field in details)


def test_scope_patch_and_delete_rules(side):
    client = side.client()
    patched = client.patch(
        f"/v1/scopes/{side.scope.pk}",
        {"blocked_topics": ["politics"], "min_relevance": 0.5},
        format="json",
    )
    assert patched.status_code == 200
    assert patched.json()["blocked_topics"] == ["politics"]
    in_use = client.delete(f"/v1/scopes/{side.scope.pk}")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["details"]["bots"] == [side.bot.name]
    client.patch(f"/v1/bots/{side.bot.pk}", {"scope_id": None}, format="json")
    assert client.delete(f"/v1/scopes/{side.scope.pk}").status_code == 204
    actions = set(AuditLog.objects.for_tenant(side.tenant).values_list("action", flat=True))
    assert {"scope.update", "scope.delete"} <= actions


def test_api_key_create_update_and_validation(side):
    client = side.client()
    created = client.post(
        "/v1/api-keys",
        {
            "name": "widget",
            "role": "chat",
            "bot_ids": [str(side.bot.pk)],
            "rate_limit_per_minute": 30,
        },
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    assert body["bot_ids"] == [str(side.bot.pk)] and body["prefix"] == body["api_key"][4:16]
    updated = client.patch(
        f"/v1/api-keys/{body['id']}", {"rate_limit_per_minute": None}, format="json"
    )
    assert updated.status_code == 200 and updated.json()["rate_limit_per_minute"] is None
    past = timezone.now() - dt.timedelta(days=1)
    bad = client.post(
        "/v1/api-keys", {"role": "owner", "expires_at": past.isoformat()}, format="json"
    )
    assert bad.status_code == 400
    assert {"role", "expires_at"} <= set(bad.json()["error"]["details"])


def test_revoked_keys_leave_the_default_listing(side):
    client = side.client()
    client.delete(f"/v1/api-keys/{side.chat_key.pk}")
    listed = {k["id"] for k in client.get("/v1/api-keys").json()["data"]}
    assert str(side.chat_key.pk) not in listed
    everything = {
        k["id"] for k in client.get("/v1/api-keys", {"include_revoked": "true"}).json()["data"]
    }
    assert str(side.chat_key.pk) in everything
    assert (
        client.patch(f"/v1/api-keys/{side.chat_key.pk}", {"name": "x"}, format="json").status_code
        == 409
    )

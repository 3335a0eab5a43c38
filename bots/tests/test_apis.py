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
    repeated = {"pii_entities": ["EMAIL", "IBAN", "EMAIL"]}
    patched = client.patch(f"/v1/scopes/{side.scope.pk}", repeated, format="json")
    assert patched.json()["pii_entities"] == ["EMAIL", "IBAN"]
    in_use = client.delete(f"/v1/scopes/{side.scope.pk}")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["details"]["bots"] == [side.bot.name]
    client.patch(f"/v1/bots/{side.bot.pk}", {"scope_id": None}, format="json")
    deleted = client.delete(f"/v1/scopes/{side.scope.pk}")
    assert deleted.status_code == 204
    # RFC 9110 (8.6): no Content-Length on a 204 (Django's middleware added "0" to every one)
    assert "Content-Length" not in deleted.headers and deleted.content == b""
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
    assert bad.json()["error"]["details"]["expires_at"] == ["Must be in the future."]
    too_fast = client.patch(
        f"/v1/api-keys/{body['id']}", {"rate_limit_per_minute": 1_000_001}, format="json"
    )
    assert too_fast.status_code == 400
    assert set(too_fast.json()["error"]["details"]) == {"rate_limit_per_minute"}


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


def test_include_revoked_that_is_no_boolean_is_a_field_error(side):
    """The schema says a boolean; 'yes' listed the keys not revoked, as if 'false' were sent."""
    client = side.client()
    bad = client.get("/v1/api-keys", {"include_revoked": "yes"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"
    assert set(bad.json()["error"]["details"]) == {"include_revoked"}
    client.delete(f"/v1/api-keys/{side.chat_key.pk}")
    listed = client.get("/v1/api-keys", {"include_revoked": "1"}).json()["data"]
    assert str(side.chat_key.pk) in {k["id"] for k in listed}


def test_a_key_limited_to_some_bots_manages_only_keys_limited_to_some_of_them(side):
    """An admin key with ``bot_ids`` could create an unlimited admin key, or lift its own limit,
    and so reach every bot."""
    from tenants.tests.factories import ApiKeyFactory

    admin = side.client()
    other_bot = admin.post("/v1/bots", {"name": "Other"}, format="json").json()["id"]
    limited = ApiKeyFactory(tenant=side.tenant, bot_ids=[side.bot.pk])
    client = side.client(limited)
    mine = [str(side.bot.pk)]

    refused = client.post("/v1/api-keys", {"name": "wider", "role": "admin"}, format="json")
    assert refused.status_code == 403  # every bot
    assert refused.json()["error"]["code"] == "permission_denied"
    # Another bot is "not found", exactly as a missing one: it was 403 (and a missing one 400),
    # which told a limited key which ids were the tenant's bots (make run, 2026-12-07).
    missing = "00000000-0000-4000-8000-000000000000"
    for bot_ids in ([other_bot], [*mine, other_bot], [missing], [*mine, missing]):
        refused = client.post(
            "/v1/api-keys", {"name": "wider", "role": "chat", "bot_ids": bot_ids}, format="json"
        )
        assert refused.status_code == 400, bot_ids
        error = refused.json()["error"]
        assert error["details"] == {"bot_ids": [f"Bot not found: {bot_ids[-1]}"]}
        patched = client.patch(f"/v1/api-keys/{limited.pk}", {"bot_ids": bot_ids}, format="json")
        assert patched.status_code == 400 and patched.json()["error"] == {
            **error,
            "request_id": patched.json()["error"]["request_id"],
        }
    assert client.patch(
        f"/v1/api-keys/{limited.pk}", {"bot_ids": []}, format="json"
    ).status_code == 403  # fmt: skip
    created = client.post(
        "/v1/api-keys", {"name": "widget", "role": "chat", "bot_ids": mine}, format="json"
    )
    assert created.status_code == 201

    # Keys it does not manage are the same 404 as missing ones, and are not listed.
    listed = {k["id"] for k in client.get("/v1/api-keys").json()["data"]}
    assert listed == {str(limited.pk), created.json()["id"]}
    for key in (side.admin_key, side.chat_key):
        assert (
            client.patch(f"/v1/api-keys/{key.pk}", {"name": "x"}, format="json").status_code == 404
        )
        assert client.delete(f"/v1/api-keys/{key.pk}").status_code == 404
    assert admin.get(f"/v1/bots/{other_bot}").status_code == 200  # the admin key still works
    assert client.delete(f"/v1/api-keys/{created.json()['id']}").status_code == 204

    # The unlimited admin key still manages every key.
    assert len(admin.get("/v1/api-keys").json()["data"]) >= 3


def test_a_key_limited_to_some_bots_sees_their_usage_only(side):
    from tenants.models import UsageDaily
    from tenants.tests.factories import ApiKeyFactory

    today = timezone.now().date()
    other_bot = side.client().post("/v1/bots", {"name": "Other"}, format="json").json()["id"]
    for bot_id, tokens in ((side.bot.pk, 10), (other_bot, 1000)):
        UsageDaily.all_tenants.create(
            tenant=side.tenant, day=today, bot_id=bot_id, requests=1, prompt_tokens=tokens
        )
    limited = side.client(ApiKeyFactory(tenant=side.tenant, bot_ids=[side.bot.pk]))
    body = limited.get("/v1/usage", {"group_by": "bot"}).json()
    assert [row["bot_id"] for row in body["data"]] == [str(side.bot.pk)]
    assert body["totals"]["prompt_tokens"] == body["data"][0]["prompt_tokens"] >= 10
    everything = side.client().get("/v1/usage", {"group_by": "bot"}).json()
    assert everything["totals"]["prompt_tokens"] == body["totals"]["prompt_tokens"] + 1000


@pytest.mark.parametrize(
    "query, accept", [({}, "application/xml"), ({"format": "xml"}, "application/json")]
)
def test_a_representation_we_do_not_render_is_answered_in_json_after_authentication(
    side, query, accept
):
    """DRF refused these with a 406 before authenticating: no credentials got a 406, not 401."""
    from rest_framework.test import APIClient

    anonymous = APIClient().get("/v1/scopes", query, HTTP_ACCEPT=accept)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "authentication_failed"
    keyed = side.client().get("/v1/scopes", query, HTTP_ACCEPT=accept)
    assert keyed.status_code == 200 and keyed["Content-Type"] == "application/json"
    assert keyed.json()["data"][0]["id"] == str(side.scope.pk)
    assert "RateLimit-Remaining" in keyed


def test_an_unknown_api_path_is_404_with_the_keys_rate_limit_headers(side):
    from rest_framework.test import APIClient

    for key in (side.admin_key, side.chat_key):
        response = side.client(key).post("/v1/no/such/thing", {}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert "RateLimit-Remaining" in response
    anonymous = APIClient().get("/v1/no-such-thing")
    assert anonymous.status_code == 404 and "RateLimit-Remaining" not in anonymous
    bad_key = APIClient().get("/v1/no-such-thing", HTTP_AUTHORIZATION="Bearer cbk_nope")
    assert bad_key.status_code == 401


def test_a_keys_expiry_in_the_audit_log_is_written_as_the_api_shows_it(side):
    """The audit entry said "2029-12-31T22:00:00+00:00" for the key whose expires_at the API
    shows as "2029-12-31T22:00:00Z" (given as 2030-01-01T00:00:00+02:00)."""
    client = side.client()
    created = client.post(
        "/v1/api-keys",
        {"role": "chat", "expires_at": "2030-01-01T00:00:00+02:00"},
        format="json",
    ).json()
    assert created["expires_at"] == "2029-12-31T22:00:00Z"
    patched = client.patch(
        f"/v1/api-keys/{created['id']}", {"expires_at": "2031-06-01T12:30:00-05:00"}, format="json"
    ).json()
    assert patched["expires_at"] == "2031-06-01T17:30:00Z"
    entries = AuditLog.objects.for_tenant(side.tenant).filter(target_id=created["id"])
    by_action = {e.action: e.changes["expires_at"] for e in entries}
    assert by_action == {
        "api_key.create": "2029-12-31T22:00:00Z",
        "api_key.update": "2031-06-01T17:30:00Z",
    }


def test_a_key_another_tenant_holds_is_an_api_key_not_found(side):
    """The message named the model as Django spells it: "Api key not found."."""
    other = build_tenant("other")
    for key_id in (other.chat_key.pk, "0d1f6a57-0000-4000-8000-000000000000"):
        response = side.client().delete(f"/v1/api-keys/{key_id}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "API key not found."

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.models import ActorType, AuditLog
from tests.plans import explain, rows_read
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def test_audit_log_lists_writes_with_actor_ip_and_request_id_and_filters():
    side = build_tenant("acme")
    client = side.client()
    client.post("/v1/datasets", {"name": "one"}, format="json", HTTP_X_REQUEST_ID="req-1")
    client.post("/v1/scopes", {"name": "two"}, format="json")
    entries = client.get("/v1/audit-logs", {"actor_id": str(side.admin_key.id)}).json()["data"]
    assert [e["action"] for e in entries] == ["scope.create", "dataset.create"]
    dataset = entries[1]
    assert dataset["request_id"] == "req-1"
    assert dataset["ip"] == "127.0.0.1"
    assert dataset["actor_type"] == "api_key"
    assert dataset["changes"]["name"] == "one"
    only = client.get("/v1/audit-logs", {"action": "scope.create"}).json()["data"]
    assert [e["action"] for e in only] == ["scope.create"]
    assert client.get("/v1/audit-logs", {"from": "yesterday"}).status_code == 400


def test_audit_log_has_no_write_verbs():
    side = build_tenant("acme")
    client = side.client()
    assert client.post("/v1/audit-logs", {}, format="json").status_code == 405
    assert client.delete("/v1/audit-logs").status_code == 405


def test_filtering_by_actor_reads_that_actors_entries_only():
    """?actor_id= read every entry of the tenant (or of every tenant) to find a rare actor's."""
    side = build_tenant("acme")
    AuditLog.all_tenants.bulk_create(
        AuditLog(tenant=side.tenant, actor_type=ActorType.API_KEY, actor_id="busy", action="x.y")
        for _ in range(500)
    )
    AuditLog.all_tenants.bulk_create(
        AuditLog(tenant=side.tenant, actor_type=ActorType.STAFF, actor_id="7", action="bot.update")
        for _ in range(3)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tenants_auditlog")
    with CaptureQueriesContext(connection) as queries:
        response = side.client().get("/v1/audit-logs", {"actor_id": "7"})
    assert [e["actor_id"] for e in response.json()["data"]] == ["7", "7", "7"]
    (sql,) = [q["sql"] for q in queries.captured_queries if "tenants_auditlog" in q["sql"]]
    assert rows_read(explain(sql)) <= 3


def test_id_filters_take_an_id_in_any_spelling_and_refuse_what_is_not_one():
    """?target_id= and ?actor_id= matched any string: a typo or a truncated id was an empty
    page, and an id in capitals (a UUID as some clients print it) found nothing."""
    side = build_tenant("acme")
    client = side.client()
    created = client.post("/v1/datasets", {"name": "one"}, format="json").json()
    AuditLog.all_tenants.create(
        tenant=side.tenant, actor_type=ActorType.STAFF, actor_id="7", action="staff_membership"
        ".create", target_type="staffmembership", target_id="12"
    )  # fmt: skip
    for spelling in (created["id"], created["id"].upper(), created["id"].replace("-", "")):
        entries = client.get("/v1/audit-logs", {"target_id": spelling}).json()["data"]
        assert [e["action"] for e in entries] == ["dataset.create"], spelling
    actor = str(side.admin_key.id).upper()
    assert client.get("/v1/audit-logs", {"actor_id": actor}).json()["data"]
    staff = client.get("/v1/audit-logs", {"target_id": "12", "actor_id": "7"}).json()["data"]
    assert [e["target_id"] for e in staff] == ["12"]
    for name in ("target_id", "actor_id"):
        for bad in (created["id"][:-1], "bot", "12abc", "١٢"):
            response = client.get("/v1/audit-logs", {name: bad})
            assert response.status_code == 400, (name, bad)
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert list(error["details"]) == [name]


def test_a_target_type_no_entry_can_have_is_400_naming_the_kinds():
    """?target_type=api_key (the spelling of the actions, "api_key.create") was an empty page:
    the kind is the model's name, "apikey". A name no model has is now a field error."""
    side = build_tenant("acme")
    client = side.client()
    client.post("/v1/api-keys", {"name": "k", "role": "chat"}, format="json")
    response = client.get("/v1/audit-logs", {"target_type": "api_key"})
    assert response.status_code == 400, response.content
    (message,) = response.json()["error"]["details"]["target_type"]
    assert "apikey" in message
    entries = client.get("/v1/audit-logs", {"target_type": "apikey"}).json()["data"]
    assert [e["action"] for e in entries] == ["api_key.create"]
    assert client.get("/v1/audit-logs", {"target_type": "user"}).status_code == 200  # staff

from __future__ import annotations

import pytest

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

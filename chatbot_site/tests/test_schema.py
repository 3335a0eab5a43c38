"""The OpenAPI schema is generated from the code, valid, and lists every /v1 endpoint."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.validation import validate_schema

from tests.test_api_isolation import v1_routes, verbs

pytestmark = pytest.mark.django_db

CONTRACT = {
    ("get", "/v1/health"), ("post", "/v1/auth/token"),
    ("get", "/v1/conversations"), ("get", "/v1/conversations/{conversation_id}"),
    ("delete", "/v1/conversations/{conversation_id}"),
    ("get", "/v1/bots"), ("post", "/v1/bots"), ("get", "/v1/bots/{bot_id}"),
    ("patch", "/v1/bots/{bot_id}"), ("delete", "/v1/bots/{bot_id}"),
    ("get", "/v1/scopes"), ("post", "/v1/scopes"), ("get", "/v1/scopes/{scope_id}"),
    ("patch", "/v1/scopes/{scope_id}"), ("delete", "/v1/scopes/{scope_id}"),
    ("get", "/v1/datasets"), ("post", "/v1/datasets"), ("get", "/v1/datasets/{dataset_id}"),
    ("patch", "/v1/datasets/{dataset_id}"), ("delete", "/v1/datasets/{dataset_id}"),
    ("get", "/v1/datasets/{dataset_id}/documents"), ("post", "/v1/datasets/{dataset_id}/documents"),
    ("post", "/v1/documents/{document_id}/reingest"),
    ("get", "/v1/documents/{document_id}"), ("delete", "/v1/documents/{document_id}"),
    ("get", "/v1/api-keys"), ("post", "/v1/api-keys"),
    ("patch", "/v1/api-keys/{key_id}"), ("delete", "/v1/api-keys/{key_id}"),
    ("get", "/v1/usage"), ("get", "/v1/audit-logs"),
}  # fmt: skip
NOT_IN_SCHEMA = {"/v1/schema", "/v1/docs"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema) -> set[tuple[str, str]]:
    return {(m, p) for p, ops in schema["paths"].items() for m in ops}


def test_schema_is_valid_openapi_3(schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")


def test_schema_lists_every_endpoint_of_the_contract(schema):
    assert operations(schema) >= CONTRACT, CONTRACT - operations(schema)


def test_every_route_in_the_url_conf_is_in_the_schema(schema):
    """A route added later without reaching the schema fails here."""
    documented = operations(schema)
    for route, view in v1_routes():
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        if path in NOT_IN_SCHEMA:
            continue
        for verb in verbs(view):
            assert (verb, path) in documented, f"{verb.upper()} {path} is missing from the schema"


def test_every_operation_documents_the_error_envelope_and_auth(schema):
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in schema["paths"].items():
        for method, operation in ops.items():
            assert "500" in operation["responses"], (method, path)
            if path not in {"/v1/health", "/v1/auth/token"}:
                assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }
                assert {"bearer": []} in operation["security"], (method, path)


def test_schema_and_docs_are_served_without_credentials(client):
    schema = client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/v1/bots" in schema.json()["paths"]
    docs = client.get("/v1/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content

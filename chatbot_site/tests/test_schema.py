"""The OpenAPI schema is generated from the code, valid, and lists every /v1 endpoint."""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.validation import validate_schema

from conversations.tests.chatkit import add_passages, ask, openai_llm
from conversations.tests.test_chat import _read as read_stream
from tests.test_api_isolation import PUBLIC, fill, v1_routes, verbs
from tests.world import World, build_tenant

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
            # Any request can find the database gone (503); any body can be too large (413).
            assert "503" in operation["responses"], (method, path)
            if method in {"post", "patch"}:
                assert "413" in operation["responses"], (method, path)
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


def test_the_docs_page_loads_nothing_from_another_host(client):
    """The page works on a machine that reaches only the service: its favicon came from
    cdn.jsdelivr.net (drf-spectacular's default), the only request that left it."""
    docs = client.get("/v1/docs").content.decode()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', docs)
    assert loaded, docs[:500]
    assert [url for url in loaded if not url.startswith("/")] == []
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png" in loaded


# --- responses conform to the schema ------------------------------------------------------------


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema terms (the rest validates as it is)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def assert_conforms(schema, method: str, template: str, response) -> None:
    """The response's JSON body matches what the schema documents for its status code."""
    documented = schema["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {template}: {status} is not documented"
    content = documented[status].get("content", {})
    if not content:
        assert not response.content, f"{method.upper()} {template}: {status} has a body"
        return
    media_type = response["Content-Type"].split(";")[0]
    assert media_type in content, f"{method.upper()} {template} {status}: {media_type}"
    if media_type != "application/json":
        return
    body_schema = as_json_schema(content["application/json"]["schema"])
    validator = jsonschema.Draft7Validator(
        {**body_schema, "components": as_json_schema(schema["components"])}
    )
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())
    ]
    assert not errors, f"{method.upper()} {template} {status}: {errors[:5]}"


def template_of(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_every_read_answers_as_the_schema_says(schema, world: World):
    client = world.a.client()
    checked = 0
    for route, view in v1_routes():
        if route in PUBLIC - {"v1/health"} or "get" not in verbs(view):
            continue
        response = client.get(fill(route, world.a))
        assert_conforms(schema, "get", template_of(route), response)
        checked += 1
    assert checked >= 14


def test_adding_documents_answers_as_the_schema_says(schema, world: World):
    """A file or a URL is answered with the document, records with ``{"data": [...]}``."""
    client = world.a.client()
    path = f"/v1/datasets/{world.a.dataset.pk}/documents"
    template = "/v1/datasets/{dataset_id}/documents"

    records = client.post(
        path, {"records": [{"title": "One", "text": "First."}, {"text": "Second."}]}, format="json"
    )
    assert records.status_code == 202, records.content
    assert len(records.json()["data"]) == 2
    assert_conforms(schema, "post", template, records)

    upload = SimpleUploadedFile("notes.md", b"# Notes\n\nSome text.", "text/markdown")
    single = client.post(path, {"file": upload, "tags": "a,b"}, format="multipart")
    assert single.status_code == 202, single.content
    assert single.json()["source"] == "notes.md"
    assert_conforms(schema, "post", template, single)

    again = client.post(
        path,
        {"file": SimpleUploadedFile("notes.md", b"# Notes\n\nSome text.", "text/markdown")},
        format="multipart",
    )
    assert again.status_code == 200
    assert_conforms(schema, "post", template, again)

    invalid = client.post(path, {"records": []}, format="json")
    assert invalid.status_code == 400
    assert_conforms(schema, "post", template, invalid)


def test_the_json_body_of_adding_a_document_is_documented_as_either_shape(schema):
    body = schema["paths"]["/v1/datasets/{dataset_id}/documents"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    one_of = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["oneOf"]
    json_shapes = {shape["$ref"] for shape in one_of}
    assert json_shapes == {
        "#/components/schemas/UrlInputRequest",
        "#/components/schemas/RecordsInputRequest",
    }


def test_list_bounds_are_in_the_schema(schema):
    """What validation enforces on the lists of a chat and of records, the schema says too."""
    components = schema["components"]["schemas"]
    messages = components["ChatInputRequest"]["properties"]["messages"]
    records = components["RecordsInputRequest"]["properties"]["records"]
    assert (messages["minItems"], messages["maxItems"]) == (1, 100)
    assert (records["minItems"], records["maxItems"]) == (1, 1000)


@pytest.mark.django_db(transaction=True)  # a chat turn runs on the pool's threads
def test_chat_and_retrieve_answer_as_the_schema_says(schema):
    """A turn as JSON, as a stream, and one the provider failed; a retrieval. The stream's
    media type was not in the schema (only its description said so), and chat's 409 and 502
    were documented without a body though they are the envelope."""
    alpha = build_tenant("alpha")
    add_passages(alpha)
    client = alpha.client(alpha.chat_key)
    question = ask(alpha, "When do annual plans renew?")
    with openai_llm(LLM_MAX_RETRIES=0) as fake:
        fake.chat_reply = "Plans renew every year [1]."
        answer = client.post("/v1/chat", question, format="json")
        assert answer.status_code == 200, answer.content
        assert answer.json()["citations"]
        assert_conforms(schema, "post", "/v1/chat", answer)

        stream = client.post("/v1/chat", {**question, "stream": True}, format="json")
        assert stream.status_code == 200
        assert b"event: done" in async_to_sync(read_stream)(stream.streaming_content)
        assert_conforms(schema, "post", "/v1/chat", stream)

        fake.fail_with = [400]
        failed = client.post("/v1/chat", question, format="json")
        assert failed.status_code == 502, failed.content
        assert_conforms(schema, "post", "/v1/chat", failed)

    hits = client.post(
        "/v1/retrieve", {"bot_id": str(alpha.bot.pk), "query": "renewal", "top_k": 2}, format="json"
    )
    assert hits.status_code == 200, hits.content
    assert hits.json()["data"]
    assert_conforms(schema, "post", "/v1/retrieve", hits)


def test_policy_blocked_is_a_code_of_the_error_envelope(schema):
    """Chat answers ``502 policy_blocked`` when it withholds an answer (README); the schema's
    list of codes lacked it, so a client generated from the schema rejected that answer."""
    codes = schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert "policy_blocked" in codes["code"]["enum"]

"""The OpenAPI schema is generated from the code, valid, and lists every /v1 endpoint."""

from __future__ import annotations

import datetime as dt
import json
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


def test_schema_is_generated_without_warnings(django_db_blocker):
    """A warning is a guess drf-spectacular made (a type it could not tell, two components of
    one name): what a client generated from the schema then gets is that guess."""
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with django_db_blocker.unblock(), GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, dict(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._error_cache)


def test_a_client_generator_gets_unique_names(schema):
    """Operation ids name a client's methods, components its classes: each once, and every
    JSON body a named component (an inline object becomes a class named after its place)."""
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    bodies = [
        (f"{method} {path} {code}", response.get("content", {}))
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        for code, response in op["responses"].items()
    ] + [
        (f"{method} {path} request", op.get("requestBody", {}).get("content", {}))
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    ]
    for where, content in bodies:
        for media_type, body in content.items():
            if media_type == "text/event-stream":
                continue
            assert "$ref" in body["schema"], f"{where} {media_type}: {body['schema']}"

    def inline_objects(node: Any, where: str) -> list[str]:
        if isinstance(node, list):
            return [f for i, item in enumerate(node) for f in inline_objects(item, where)]
        if not isinstance(node, dict):
            return []
        found = [where] if node.get("type") == "object" and node.get("properties") else []
        return found + [f for k, v in node.items() for f in inline_objects(v, f"{where}.{k}")]

    for name, component in schema["components"]["schemas"].items():
        nested = [where for where in inline_objects(component, name) if where != name]
        assert not nested, f"anonymous objects in {name}: {nested}"


def test_schema_passes_openapi_spec_validator(schema):
    """What SDK generators run first (a dev requirement, so it runs wherever the tests do)."""
    import openapi_spec_validator

    openapi_spec_validator.validate(json.loads(json.dumps(schema, default=str)))


def test_the_token_exchange_documents_the_errors_it_answers(schema):
    """It has no role to check, no object to find or change: no 403, 404 or 409 (a client
    generated from the schema had handlers and types for answers that never come)."""
    responses = schema["paths"]["/v1/auth/token"]["post"]["responses"]
    assert sorted(responses) == ["200", "400", "401", "413", "415", "429", "500", "503"]


# The errors each operation can answer, besides the 500 and 503 any can: 400 where it takes a
# query or a body, 413 and 415 where a body, 404 where its path names an object, 401 and 429
# where it takes a key, 403 where that must be an admin key; and what its view adds (a name
# taken, a scope in use, a run under way: 409; chat and retrieve name a bot in the body).
ERRORS = {
    ("get", "/v1/health"): "",
    ("post", "/v1/auth/token"): "400 401 413 415 429",
    ("get", "/v1/bots"): "400 401 403 429",
    ("post", "/v1/bots"): "400 401 403 409 413 415 429",
    ("get", "/v1/bots/{bot_id}"): "401 403 404 429",
    ("patch", "/v1/bots/{bot_id}"): "400 401 403 404 409 413 415 429",
    ("delete", "/v1/bots/{bot_id}"): "401 403 404 429",
    ("get", "/v1/scopes"): "400 401 403 429",
    ("post", "/v1/scopes"): "400 401 403 409 413 415 429",
    ("get", "/v1/scopes/{scope_id}"): "401 403 404 429",
    ("patch", "/v1/scopes/{scope_id}"): "400 401 403 404 409 413 415 429",
    ("delete", "/v1/scopes/{scope_id}"): "401 403 404 409 429",
    ("get", "/v1/datasets"): "400 401 403 429",
    ("post", "/v1/datasets"): "400 401 403 409 413 415 429",
    ("get", "/v1/datasets/{dataset_id}"): "401 403 404 429",
    ("patch", "/v1/datasets/{dataset_id}"): "400 401 403 404 409 413 415 429",
    ("delete", "/v1/datasets/{dataset_id}"): "401 403 404 429",
    ("get", "/v1/datasets/{dataset_id}/documents"): "400 401 403 404 429",
    ("post", "/v1/datasets/{dataset_id}/documents"): "400 401 403 404 409 413 415 429",
    ("get", "/v1/documents/{document_id}"): "401 403 404 429",
    ("delete", "/v1/documents/{document_id}"): "401 403 404 429",
    ("post", "/v1/documents/{document_id}/reingest"): "401 403 404 409 429",
    ("get", "/v1/api-keys"): "400 401 403 429",
    ("post", "/v1/api-keys"): "400 401 403 413 415 429",
    ("patch", "/v1/api-keys/{key_id}"): "400 401 403 404 409 413 415 429",
    ("delete", "/v1/api-keys/{key_id}"): "401 403 404 429",
    ("get", "/v1/audit-logs"): "400 401 403 429",
    ("get", "/v1/usage"): "400 401 403 429",
    ("get", "/v1/conversations"): "400 401 429",
    ("get", "/v1/conversations/{conversation_id}"): "400 401 404 429",
    ("delete", "/v1/conversations/{conversation_id}"): "401 404 429",
    ("post", "/v1/chat"): "400 401 403 404 409 413 415 429 502",
    ("post", "/v1/retrieve"): "400 401 403 404 413 415 429 502",
}  # fmt: skip


def test_every_operation_lists_the_errors_it_can_answer(schema):
    """They were listed by HTTP method: a 404 on GET /v1/bots and /v1/usage (nothing to find), a
    409 on every create and delete (most change nothing another can hold), 403 on the
    conversations a chat key may read, 413 and 415 on a reingest that reads no body, while
    /v1/retrieve's 502 (the embedding provider failed) was missing: a client generated from the
    schema had handlers and types for answers that never come, and none for one that does."""
    assert operations(schema) == set(ERRORS)
    for (method, path), errors in ERRORS.items():
        responses = schema["paths"][path][method]["responses"]
        listed = [code for code in responses if int(code) >= 400 and code not in {"500", "503"}]
        assert listed == errors.split(), f"{method.upper()} {path}"
        for code in listed:
            assert responses[code]["description"], f"{method.upper()} {path} {code}"


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
            if "requestBody" in operation:
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


# The headers API.md names: each one a response carries is declared for its status.
CONTRACT_HEADERS = ("X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                    "Retry-After")  # fmt: skip
FORMATS = jsonschema.FormatChecker()  # uuid, date, email ...; date-time needs a package: below


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value.upper() and dt.datetime.fromisoformat(value).tzinfo is not None


def closed(node: Any) -> Any:
    """An object whose properties the schema lists takes no others: a field the server sends
    and the schema does not name is one a client generated from the schema drops."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: closed(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def validator_of(schema, node: Any) -> jsonschema.Draft7Validator:
    """Validates by ``node`` of ``schema`` (its $refs resolved), closed, formats checked."""
    return jsonschema.Draft7Validator(
        closed({**as_json_schema(node), "components": as_json_schema(schema["components"])}),
        format_checker=FORMATS,
    )


def header_problems(schema, declared: dict[str, Any], response) -> list[str]:
    """The contract's headers the response sends are declared; those declared required are
    sent; each value is valid by its declared schema."""
    headers = {}
    for name, header in declared.get("headers", {}).items():
        if "$ref" in header:
            header = schema["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
        headers[name.lower()] = header
    problems = [
        f"{name} is sent but not declared"
        for name in CONTRACT_HEADERS
        if response.has_header(name) and name.lower() not in headers
    ]
    for name, header in headers.items():
        if not response.has_header(name):
            if header.get("required"):
                problems.append(f"{name} is declared required but not sent")
            continue
        value: Any = response[name]
        if header["schema"].get("type") == "integer" and value.isdigit():
            value = int(value)
        problems += [f"{name}: {e.message}" for e in validator_of(schema, header["schema"])
                     .iter_errors(value)]  # fmt: skip
    return problems


def assert_conforms(schema, method: str, template: str, response) -> None:
    """The response's headers and JSON body match what the schema documents for its status
    code: no field and no contract header it does not declare, every format as declared."""
    documented = schema["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {template}: {status} is not documented"
    problems = header_problems(schema, documented[status], response)
    assert not problems, f"{method.upper()} {template} {status}: {problems}"
    content = documented[status].get("content", {})
    if not content:
        assert not response.content, f"{method.upper()} {template}: {status} has a body"
        return
    media_type = response["Content-Type"].split(";")[0]
    assert media_type in content, f"{method.upper()} {template} {status}: {media_type}"
    if media_type != "application/json":
        return
    validator = validator_of(schema, content["application/json"]["schema"])
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
        path,
        {"records": [{"title": "One", "text": "First."}, {"title": "Two", "text": "Second."}]},
        format="json",
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
        # The turn as the history shows it: its citations and usage as stored.
        history = client.get(f"/v1/conversations/{answer.json()['session_id']}")
        assert history.json()["messages"][-1]["citations"], history.json()
        assert_conforms(schema, "get", "/v1/conversations/{conversation_id}", history)

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
    assert schema["components"]["schemas"]["Error"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }
    codes = schema["components"]["schemas"]["ErrorDetail"]["properties"]
    assert "policy_blocked" in codes["code"]["enum"]


def test_the_filters_object_takes_no_key_but_its_own(schema):
    """``filters`` of /v1/chat and /v1/retrieve refuses a key it does not know (400
    ``filters.<name>``); the schema let any through, so a generated client sent ``"tag"``."""
    filters = schema["components"]["schemas"]["ChatFiltersRequest"]
    assert filters["additionalProperties"] is False
    assert set(filters["properties"]) == {"tags"}


def test_a_json_body_takes_no_field_but_its_own_and_what_it_read(schema, world: World):
    """Every JSON body but the token exchange's refuses a field it does not know (``400``,
    ``details.<field>``) and ignores the read-only fields of what was read, sent back: the
    schema says both. It let any field through (2026-12-08: ``{"is_actve": false}`` was a
    valid bot body by it), so a generated client's own check passed what the server refused."""
    schemas = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None or operation["operationId"] == "auth_token":
                continue
            refs = [body["schema"], *body["schema"].get("oneOf", [])]
            names = [ref["$ref"].rsplit("/", 1)[1] for ref in refs if "$ref" in ref]
            for name in names:
                if "oneOf" not in schemas[name]:
                    assert schemas[name]["additionalProperties"] is False, (method, path, name)
    client = world.a.client()
    bot = client.get(f"/v1/bots/{world.a.bot.pk}").json()
    patch = schema["paths"]["/v1/bots/{bot_id}"]["patch"]["requestBody"]["content"]
    validator = validator_of(schema, patch["application/json"]["schema"])
    misspelt = {"is_actve": False}
    assert not validator.is_valid(misspelt)
    refused = client.patch(f"/v1/bots/{world.a.bot.pk}", misspelt, format="json")
    assert refused.status_code == 400
    assert "is_actve" in refused.json()["error"]["details"]
    read_back = {**bot, "name": "Renamed as read"}
    assert validator.is_valid(read_back), list(validator.iter_errors(read_back))[:3]
    renamed = client.patch(f"/v1/bots/{world.a.bot.pk}", read_back, format="json")
    assert renamed.status_code == 200, renamed.content

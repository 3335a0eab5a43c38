# mypy: disable-error-code="attr-defined"
"""JSON request bodies are read strictly (``chatbot_site.strict``): a value of the wrong JSON
type is ``400 validation_error`` naming the field, on every /v1 route that takes a body. DRF
coerced them: ``"stream": "true"`` streamed, ``"is_active": "false"`` deactivated, ``"top_k":
"10"`` was 10, ``"content": 5`` was the message "5", ``"bot_id": 5`` was the UUID
00000000-…-000000000005 (a 404 for a bot the client never named) and ``"temperature": true`` was
1.0. The right types are still taken, and the schema agrees with the server on both."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework import serializers
from rest_framework.test import APIClient

from chatbot_site.strict import UNCHECKED, StrictInput, expected_type
from chatbot_site.tests.test_schema import validator_of
from knowledge.models import Document
from tests.world import TenantWorld, build_tenant

BOT, SCOPE, DATASET, KEY = "{bot}", "{scope}", "{dataset}", "{key}"

# endpoint → (method, path, schema path, a valid body). The body's ids are filled per tenant.
ENDPOINTS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "chat": ("post", "/v1/chat", "/v1/chat",
             {"bot_id": BOT, "messages": [{"role": "user", "content": "How are refunds paid?"}]}),
    "retrieve": ("post", "/v1/retrieve", "/v1/retrieve", {"bot_id": BOT, "query": "refunds"}),
    "bots.create": ("post", "/v1/bots", "/v1/bots", {"name": "Another bot"}),
    "bots.update": ("patch", f"/v1/bots/{BOT}", "/v1/bots/{bot_id}", {}),
    "scopes.create": ("post", "/v1/scopes", "/v1/scopes", {"name": "Another scope"}),
    "scopes.update": ("patch", f"/v1/scopes/{SCOPE}", "/v1/scopes/{scope_id}", {}),
    "datasets.create": ("post", "/v1/datasets", "/v1/datasets", {"name": "Another dataset"}),
    "datasets.update": ("patch", f"/v1/datasets/{DATASET}", "/v1/datasets/{dataset_id}", {}),
    "documents.records": ("post", f"/v1/datasets/{DATASET}/documents",
                          "/v1/datasets/{dataset_id}/documents",
                          {"records": [{"title": "T", "text": "Refunds take five days."}]}),
    "documents.url": ("post", f"/v1/datasets/{DATASET}/documents",
                      "/v1/datasets/{dataset_id}/documents", {"url": "https://example.com/faq"}),
    "api-keys.create": ("post", "/v1/api-keys", "/v1/api-keys", {"role": "chat"}),
    "api-keys.update": ("patch", f"/v1/api-keys/{KEY}", "/v1/api-keys/{key_id}", {}),
    "auth.token": ("post", "/v1/auth/token", "/v1/auth/token", {"api_key": KEY}),
}  # fmt: skip

# (endpoint, the field named in details, the body's change) — each one taken before.
WRONG: list[tuple[str, str, dict[str, Any]]] = [
    ("chat", "bot_id", {"bot_id": 5}),
    ("chat", "session_id", {"session_id": 7}),
    ("chat", "messages.0.content", {"messages": [{"role": "user", "content": 5}]}),
    ("chat", "messages.0.content", {"messages": [{"role": "user", "content": 1.5}]}),
    ("chat", "stream", {"stream": "true"}),
    ("chat", "stream", {"stream": "yes"}),
    ("chat", "stream", {"stream": "false"}),
    ("chat", "stream", {"stream": 1}),
    ("chat", "stream", {"stream": 0}),
    ("chat", "filters.tags.0", {"filters": {"tags": [5]}}),
    ("retrieve", "bot_id", {"bot_id": 5}),
    ("retrieve", "query", {"query": 5}),
    ("retrieve", "top_k", {"top_k": "10"}),
    ("retrieve", "filters.tags.0", {"filters": {"tags": [True]}}),
    ("bots.create", "name", {"name": 5}),
    ("bots.create", "description", {"description": 5}),
    ("bots.create", "system_prompt", {"system_prompt": 1.5}),
    ("bots.create", "model", {"model": 4}),
    ("bots.create", "temperature", {"temperature": "0.5"}),
    ("bots.create", "temperature", {"temperature": True}),
    ("bots.create", "max_output_tokens", {"max_output_tokens": "100"}),
    ("bots.create", "dataset_ids.0", {"dataset_ids": [5]}),
    ("bots.create", "scope_id", {"scope_id": 5}),
    ("bots.create", "top_k", {"top_k": "5"}),
    ("bots.create", "is_active", {"is_active": "false"}),
    ("bots.create", "is_active", {"is_active": 0}),
    ("bots.update", "is_active", {"is_active": "yes"}),
    ("bots.update", "temperature", {"temperature": "0.1"}),
    ("scopes.create", "name", {"name": 5}),
    ("scopes.create", "description", {"description": 5}),
    ("scopes.create", "allowed_topics.0", {"allowed_topics": [5]}),
    ("scopes.create", "blocked_topics.1", {"blocked_topics": ["legal advice", 1.5]}),
    ("scopes.create", "refusal_message", {"refusal_message": 5}),
    ("scopes.create", "min_relevance", {"min_relevance": "0.5"}),
    ("scopes.create", "min_relevance", {"min_relevance": True}),
    ("scopes.create", "answer_without_context", {"answer_without_context": "true"}),
    ("scopes.create", "answer_without_context", {"answer_without_context": 1}),
    ("scopes.create", "tags.0", {"tags": [5]}),
    ("scopes.update", "answer_without_context", {"answer_without_context": "false"}),
    ("datasets.create", "name", {"name": 5}),
    ("datasets.create", "description", {"description": 5}),
    ("datasets.create", "tags.0", {"tags": [5]}),
    ("datasets.create", "chunk_size", {"chunk_size": "512"}),
    ("datasets.create", "chunk_overlap", {"chunk_overlap": "10"}),
    ("datasets.update", "chunk_size", {"chunk_size": "256"}),
    ("documents.records", "records.0.text", {"records": [{"title": "T", "text": 5}]}),
    ("documents.records", "records.0.title", {"records": [{"text": "x", "title": 5}]}),
    ("documents.records", "records.1.external_id",
     {"records": [{"title": "T", "text": "x"}, {"title": "T", "text": "y", "external_id": 5}]}),
    ("documents.records", "records.0.tags.0", {"records": [{"title": "T", "text": "x", "tags": [5]}]}),
    ("documents.url", "title", {"title": 5}),
    ("documents.url", "tags.0", {"tags": [5]}),
    ("api-keys.create", "name", {"name": 5}),
    ("api-keys.create", "rate_limit_per_minute", {"rate_limit_per_minute": "10"}),
    ("api-keys.create", "bot_ids.0", {"bot_ids": [5]}),
    ("api-keys.update", "rate_limit_per_minute", {"rate_limit_per_minute": "10"}),
    ("api-keys.update", "name", {"name": 5}),
    ("auth.token", "api_key", {"api_key": 5}),
]  # fmt: skip

# (endpoint, the body's change, the status) — the right types, all still taken.
RIGHT: list[tuple[str, dict[str, Any], int]] = [
    ("chat", {"session_id": None, "stream": False, "metadata": {"n": 1, "ok": True},
              "filters": {"tags": ["faq"]}}, 200),
    ("retrieve", {"top_k": 10, "filters": {"tags": ["faq"]}}, 200),
    ("retrieve", {"top_k": 10.0}, 200),  # JSON has one number type: 10.0 is the integer 10
    ("bots.create", {"description": "", "system_prompt": "Be brief.", "model": None,
                     "temperature": 1, "max_output_tokens": 256, "dataset_ids": [DATASET],
                     "scope_id": SCOPE, "top_k": 3, "is_active": False}, 201),
    ("bots.update", {"temperature": 0.2, "is_active": True, "model": ""}, 200),
    ("scopes.create", {"description": "Billing.", "allowed_topics": ["invoices"],
                       "blocked_topics": [], "refusal_message": "Billing only.",
                       "min_relevance": 0, "answer_without_context": True,
                       "pii_entities": ["EMAIL"], "tags": ["faq"]}, 201),
    ("scopes.update", {"min_relevance": 0.5, "answer_without_context": False}, 200),
    ("datasets.create", {"description": "", "tags": ["faq"], "chunk_size": 256,
                         "chunk_overlap": 32}, 201),
    ("datasets.update", {"chunk_size": 300}, 200),
    ("documents.records", {"records": [{"text": "Refunds take five days.", "title": "Refunds",
                                        "tags": ["faq"], "external_id": "kb-1",
                                        "metadata": {"n": 1}}]}, 202),
    ("documents.url", {"title": "FAQ", "tags": ["web"]}, 202),
    ("api-keys.create", {"name": "widget", "bot_ids": [BOT], "rate_limit_per_minute": 30,
                         "expires_at": None}, 201),
    ("api-keys.update", {"name": "renamed", "rate_limit_per_minute": None}, 200),
    ("auth.token", {}, 200),
]  # fmt: skip


def filled(value: Any, side: TenantWorld) -> Any:
    """``value`` with the placeholders replaced by ``side``'s ids (the key's: its secret in a
    token exchange, its id in a path)."""
    ids = {BOT: str(side.bot.pk), SCOPE: str(side.scope.pk), DATASET: str(side.dataset.pk)}
    if isinstance(value, dict):
        return {k: filled(v, side) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, side) for v in value]
    if value == KEY:
        return side.admin_key.plaintext
    return ids.get(value, value) if isinstance(value, str) else value


def send(side: TenantWorld, endpoint: str, change: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    method, path, _template, base = ENDPOINTS[endpoint]
    body = filled({**copy.deepcopy(base), **change}, side)
    for placeholder, pk in ((BOT, side.bot.pk), (SCOPE, side.scope.pk),
                            (DATASET, side.dataset.pk), (KEY, side.chat_key.pk)):  # fmt: skip
        path = path.replace(placeholder, str(pk))
    if endpoint == "auth.token":
        client = APIClient()
    elif endpoint in {"chat", "retrieve"}:
        client = side.client(side.chat_key)
    else:
        client = side.client()
    return getattr(client, method)(path, body, format="json"), body


def schema_errors(schema: dict[str, Any], endpoint: str, body: dict[str, Any]) -> list[str]:
    method, _path, template, _base = ENDPOINTS[endpoint]
    request = schema["paths"][template][method]["requestBody"]["content"]["application/json"]
    return [e.message for e in validator_of(schema, request["schema"]).iter_errors(body)]


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def check_wrong(schema, side: TenantWorld, endpoint: str, field: str, change: dict[str, Any]):
    response, body = send(side, endpoint, change)
    assert response.status_code == 400, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    assert list(error["details"]) == [field], error["details"]
    assert error["details"][field][0].startswith("Expected "), error["details"]
    assert schema_errors(schema, endpoint, body), f"the schema takes {body}"


def check_right(schema, side: TenantWorld, endpoint: str, change: dict[str, Any], status: int):
    response, body = send(side, endpoint, change)
    assert response.status_code == status, response.content[:400]
    assert not (problems := schema_errors(schema, endpoint, body)), problems


def ids(rows: list[tuple[Any, ...]]) -> list[str]:
    return [f"{row[0]}-{row[1] if isinstance(row[1], str) else i}" for i, row in enumerate(rows)]


NOT_CHAT_WRONG = [row for row in WRONG if row[0] != "chat"]
CHAT_WRONG = [row for row in WRONG if row[0] == "chat"]
NOT_CHAT_RIGHT = [row for row in RIGHT if row[0] != "chat"]
CHAT_RIGHT = [row for row in RIGHT if row[0] == "chat"]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "field", "change"), NOT_CHAT_WRONG, ids=ids(NOT_CHAT_WRONG))
def test_a_wrong_json_type_is_a_field_error(schema, endpoint, field, change):
    check_wrong(schema, build_tenant("acme"), endpoint, field, change)


@pytest.mark.django_db(transaction=True)  # the chat view reads the key on the pool's threads
@pytest.mark.parametrize(("endpoint", "field", "change"), CHAT_WRONG, ids=ids(CHAT_WRONG))
def test_a_wrong_json_type_in_a_chat_request_is_a_field_error(schema, endpoint, field, change):
    check_wrong(schema, build_tenant("acme"), endpoint, field, change)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "change", "status"), NOT_CHAT_RIGHT, ids=ids(NOT_CHAT_RIGHT))
def test_the_right_json_types_are_taken(schema, endpoint, change, status):
    check_right(schema, build_tenant("acme"), endpoint, change, status)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("endpoint", "change", "status"), CHAT_RIGHT, ids=ids(CHAT_RIGHT))
def test_the_right_json_types_are_taken_by_chat(schema, endpoint, change, status):
    check_right(schema, build_tenant("acme"), endpoint, change, status)


@pytest.mark.django_db
def test_type_errors_and_other_errors_are_answered_together():
    side = build_tenant("acme")
    response, _body = send(side, "bots.create", {"name": None, "top_k": "5", "temperature": 9})
    details = response.json()["error"]["details"]
    assert set(details) == {"name", "top_k", "temperature"}, details
    assert details["top_k"] == ["Expected an integer, got a string."]


@pytest.mark.django_db
def test_a_wrong_type_changes_nothing():
    """The change with a wrong type is refused whole: "is_active": "false" deactivated the bot."""
    side = build_tenant("acme")
    response, _body = send(side, "bots.update", {"name": "Renamed", "is_active": "false"})
    assert response.status_code == 400
    side.bot.refresh_from_db()
    assert side.bot.is_active and side.bot.name != "Renamed"


# --- every request serializer is strict ------------------------------------------------------


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


APPS = {"bots", "chatbot_site", "conversations", "knowledge", "tenants"}


def leaves(field: serializers.Field) -> list[serializers.Field]:
    if isinstance(field, serializers.Serializer):
        return []  # a nested serializer is a request serializer of its own (checked below)
    if isinstance(field, serializers.ListField | serializers.DictField):
        return leaves(field.child)
    return [field]


def test_every_request_serializer_is_strict_and_its_fields_typed():
    """Every serializer of our apps named ``*Input`` (each a request body, or part of one) and
    every serializer nested in one derives from StrictInput; every field it reads is of a kind
    whose JSON type the check knows (or is free: JSON, a form's file). A new field class would
    otherwise be read as DRF reads it, loosely."""
    ours = [
        cls
        for cls in all_subclasses(serializers.Serializer)
        if cls.__module__.split(".")[0] in APPS and "tests" not in cls.__module__
    ]
    inputs = [cls for cls in ours if cls.__name__.endswith("Input") or issubclass(cls, StrictInput)]
    assert len(inputs) >= 12
    for cls in inputs:
        assert issubclass(cls, StrictInput), cls
        for name, field in cls().fields.items():
            nested = field.child if isinstance(field, serializers.ListField) else field
            if isinstance(nested, serializers.Serializer):
                assert isinstance(nested, StrictInput), f"{cls.__name__}.{name}"
            for leaf in leaves(field):
                known = expected_type(leaf) is not None or isinstance(leaf, UNCHECKED)
                free = type(leaf).__name__ == "_UnvalidatedField"  # a DictField's values
                assert known or free, f"{cls.__name__}.{name}: {type(leaf).__name__}"


# --- multipart uploads: form fields are text, one file a request ---------------------------


def upload(side: TenantWorld, fields: dict[str, Any]) -> Any:
    return side.client().post(
        f"/v1/datasets/{side.dataset.pk}/documents", fields, format="multipart"
    )


def new_documents(side: TenantWorld) -> int:
    return Document.objects.for_tenant(side.tenant).exclude(pk=side.document.pk).count()


@pytest.mark.django_db
def test_an_upload_takes_text_fields_as_text():
    """A form has only strings: `title` and comma-separated `tags` stay as they are."""
    side = build_tenant("acme")
    file = SimpleUploadedFile("a.md", b"# A\n\nText.")
    response = upload(side, {"file": file, "title": "123", "tags": ["1, true", "x"]})
    assert response.status_code == 202, response.content
    assert (response.json()["title"], response.json()["tags"]) == ("123", ["1", "true", "x"])


@pytest.mark.django_db
def test_an_upload_of_two_files_is_refused_not_cut_to_the_last():
    """Two `file` parts made one document of the last one; the first was dropped unsaid."""
    side = build_tenant("acme")
    files = [SimpleUploadedFile("a.md", b"# A"), SimpleUploadedFile("b.md", b"# B")]
    response = upload(side, {"file": files})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"file": ["Expected one file, got 2."]}
    assert new_documents(side) == 0


@pytest.mark.django_db
def test_a_file_where_a_text_field_goes_is_refused():
    """A `title` sent as a file was no title at all (the document was added untitled)."""
    side = build_tenant("acme")
    response = upload(
        side,
        {"file": SimpleUploadedFile("a.md", b"# A"), "title": SimpleUploadedFile("t.txt", b"T")},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"title": ["Expected text, got a file."]}
    assert new_documents(side) == 0


@pytest.mark.django_db
def test_the_upload_limit_counts_every_file_of_the_request(settings):
    """INGEST_MAX_UPLOAD_BYTES bounds the file bytes of one request together: a file at the
    limit is taken; two files under it whose sum is over it are 413 as the bytes arrive (before
    the view could refuse the second file), so that no request stores more than the limit."""
    settings.INGEST_MAX_UPLOAD_BYTES = 1024
    side = build_tenant("acme")
    at_limit = upload(side, {"file": SimpleUploadedFile("a.txt", b"a" * 1024)})
    assert at_limit.status_code == 202, at_limit.content
    over = upload(side, {"file": SimpleUploadedFile("b.txt", b"b" * 1025)})
    assert over.status_code == 413
    files = [SimpleUploadedFile(f"{n}.txt", n.encode() * 600) for n in "cd"]
    together = upload(side, {"file": files})
    assert together.status_code == 413, together.content
    assert together.json()["error"]["details"] == {"limit_bytes": 1024}
    assert new_documents(side) == 1


def test_the_schema_describes_no_request_body_by_strict_inputs_own_words(schema):
    """drf-spectacular describes a serializer by its docstring or its base's: StrictInput's
    was the description of every request body that has none of its own."""
    assert StrictInput.__doc__ is None
    components = schema["components"]["schemas"].values()
    assert not [c for c in components if "JSON type" in c.get("description", "")]


def test_strict_input_reads_values_as_their_json_types():
    """The check itself, on a serializer of its own: every leaf kind it knows."""

    class Probe(StrictInput):
        flag = serializers.BooleanField(required=False)
        count = serializers.IntegerField(required=False)
        ratio = serializers.FloatField(required=False)
        name = serializers.CharField(required=False)
        ref = serializers.UUIDField(required=False)
        when = serializers.DateTimeField(required=False)
        kind = serializers.ChoiceField(choices=["a", "b"], required=False)
        names = serializers.ListField(child=serializers.CharField(), required=False)
        counts = serializers.DictField(child=serializers.IntegerField(), required=False)
        anything = serializers.JSONField(required=False)

    good = {"flag": False, "count": 3, "ratio": 1, "name": "x", "ref": str(uuid.uuid4()),
            "when": "2026-12-07T18:00:00Z", "kind": "a", "names": ["x"], "counts": {"a": 1},
            "anything": ["x", 1, None]}  # fmt: skip
    probe = Probe(data=good)
    assert probe.is_valid(), probe.errors
    bad = {"flag": "false", "count": True, "ratio": "1", "name": 1, "ref": 1, "when": 1.5,
           "kind": 1, "names": ["x", 2], "counts": {"a": "1"}, "anything": "x"}  # fmt: skip
    probe = Probe(data=bad)
    assert not probe.is_valid()
    assert set(probe.errors) == set(bad) - {"anything"}
    assert probe.errors["names"] == {1: ["Expected a string, got a number."]}
    assert probe.errors["counts"] == {"a": ["Expected an integer, got a string."]}
    assert probe.errors["flag"] == ["Expected a boolean, got a string."]
    assert probe.errors["count"] == ["Expected an integer, got a boolean."]


REFUSE_UNKNOWN = [name for name in ENDPOINTS if name != "auth.token"]


def check_unknown(side: TenantWorld, endpoint: str) -> None:
    response, _body = send(side, endpoint, {"strem": True})
    assert response.status_code == 400, (endpoint, response.content)
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == ["strem"]
    assert error["details"]["strem"][0].startswith("Unknown field; the fields are: ")


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", [e for e in REFUSE_UNKNOWN if e not in {"chat", "retrieve"}])
def test_a_field_the_body_does_not_have_is_a_field_error(endpoint):
    """A misspelt field was ignored: PATCH {"is_actve": false} answered 200 with the bot on,
    a URL body's {"tag": [...]} was a document without tags."""
    check_unknown(build_tenant("acme"), endpoint)


@pytest.mark.django_db(transaction=True)  # the chat view reads the key on the pool's threads
@pytest.mark.parametrize("endpoint", ["chat", "retrieve"])
def test_a_field_a_chat_or_retrieve_body_does_not_have_is_a_field_error(endpoint):
    """{"strem": true} was answered as JSON, {"top_k": 3} on /v1/chat ignored."""
    check_unknown(build_tenant("acme"), endpoint)

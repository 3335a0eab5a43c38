# mypy: disable-error-code="no-untyped-def,attr-defined,union-attr"
"""Every endpoint of the contract answers as ``GET /v1/schema`` says — for a client generated
from the schema: its 2xx bodies and its error envelopes (400 with details, 401, 403, 404, 409,
413, 415, 429) validate against the response the schema declares for that status, the headers
the contract names (``X-Request-ID``, ``RateLimit-*``, ``Retry-After``) are declared there, the
request bodies and query parameters the server accepts are valid by the schema, and those it
refuses for a reason the schema can say are invalid by it. Through the real stack: the views,
middleware, PostgreSQL and Redis; nothing mocked."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from chatbot_site.tests.test_schema import assert_conforms, validator_of
from tenants.tests.factories import ApiKeyFactory
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@dataclass
class Sent:
    method: str
    path: str
    media_type: str | None = None
    body: Any = None


@dataclass
class Ctx:
    """The world of one tenant and the last request sent through :meth:`send`."""

    side: TenantWorld
    sent: list[Sent] = field(default_factory=list)

    def client(self, key=None, *, token: str | None = None) -> APIClient:
        client = APIClient()
        bearer = token if token is not None else (key or self.side.admin_key).plaintext
        # Its own request id, as a client may send (echoed back when sane).
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer}", HTTP_X_REQUEST_ID="sdk-1.2:3")
        return client

    def send(self, method: str, path: str, body: Any = None, *, client=None, fmt="json", **kw):
        client = client or self.client()
        media = {"json": "application/json", "multipart": "multipart/form-data"}.get(fmt)
        self.sent.append(Sent(method, path, media if body is not None else None, body))
        if body is None:
            return getattr(client, method)(path, **kw)
        if fmt in {"json", "multipart"}:
            return getattr(client, method)(path, body, format=fmt, **kw)
        return getattr(client, method)(path, body, content_type=fmt, **kw)


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def queued_document(ctx: Ctx) -> str:
    dataset = ctx.side.dataset.pk
    added = ctx.send("post", f"/v1/datasets/{dataset}/documents",
                     {"records": [{"title": "Q", "text": f"Queued {uuid.uuid4()}."}]})  # fmt: skip
    assert added.status_code == 202, added.content
    return added.json()["data"][0]["id"]


def limited_key(ctx: Ctx):
    """A key that has used its one request of the minute."""
    key = ApiKeyFactory(tenant=ctx.side.tenant, role="admin", rate_limit_per_minute=1)
    assert ctx.client(key).get("/v1/bots").status_code == 200
    return key


def jwt(ctx: Ctx) -> str:
    answer = APIClient().post(
        "/v1/auth/token", {"api_key": ctx.side.admin_key.plaintext}, format="json"
    )
    return answer.json()["access_token"]


@dataclass
class Case:
    id: str
    method: str
    template: str
    status: int
    run: Callable[[Ctx], Any]
    # A refused body the schema can describe as invalid (a missing field, an enum, a bound).
    schema_rejects: bool = False
    code: str | None = None


def c(id, method, template, status, run, *, schema_rejects=False, code=None) -> Case:
    return Case(id, method, template, status, run, schema_rejects, code)


BOT, SCOPE, DATASET = "/v1/bots/{bot_id}", "/v1/scopes/{scope_id}", "/v1/datasets/{dataset_id}"
DOCS, DOC = "/v1/datasets/{dataset_id}/documents", "/v1/documents/{document_id}"
KEY, CONV = "/v1/api-keys/{key_id}", "/v1/conversations/{conversation_id}"
MISSING = "00000000-0000-4000-8000-000000000000"


def upload(name="notes.md", content=b"# Notes\n\nSome text.", kind="text/markdown"):
    return SimpleUploadedFile(name, content, kind)


CASES = [
    # --- health, token --------------------------------------------------------------------
    c("health", "get", "/v1/health", 200, lambda x: x.send("get", "/v1/health", client=APIClient())),
    c("token", "post", "/v1/auth/token", 200,
      lambda x: x.send("post", "/v1/auth/token", {"api_key": x.side.admin_key.plaintext},
                       client=APIClient())),
    c("token-missing-key", "post", "/v1/auth/token", 400,
      lambda x: x.send("post", "/v1/auth/token", {}, client=APIClient()),
      schema_rejects=True, code="validation_error"),
    c("token-bad-key", "post", "/v1/auth/token", 401,
      lambda x: x.send("post", "/v1/auth/token", {"api_key": "cbk_nope_" + "x" * 40},
                       client=APIClient())),
    c("token-429", "post", "/v1/auth/token", 429,
      lambda x: [x.send("post", "/v1/auth/token", {"api_key": "cbk_nope_" + "x" * 40},
                        client=APIClient()) for _ in range(3)][-1], code="rate_limited"),
    c("token-413", "post", "/v1/auth/token", 413,
      lambda x: x.send("post", "/v1/auth/token", {"api_key": "k" * 3000}, client=APIClient())),
    c("token-415", "post", "/v1/auth/token", 415,
      lambda x: x.send("post", "/v1/auth/token", "api_key=x", fmt="text/plain",
                       client=APIClient())),
    # --- bots -----------------------------------------------------------------------------
    c("bots-list", "get", "/v1/bots", 200, lambda x: x.send("get", "/v1/bots?limit=1")),
    c("bots-list-page-2", "get", "/v1/bots", 200,
      lambda x: x.send("post", "/v1/bots", {"name": new_name("bot")}) and x.send(
          "get", "/v1/bots?limit=1&cursor="
                       + x.send("get", "/v1/bots?limit=1").json()["next_cursor"])),
    c("bots-list-active", "get", "/v1/bots", 200, lambda x: x.send("get", "/v1/bots?is_active=true")),
    c("bots-list-bad-bool", "get", "/v1/bots", 400, lambda x: x.send("get", "/v1/bots?is_active=maybe"),
      code="validation_error"),
    c("bots-list-limit-0", "get", "/v1/bots", 400, lambda x: x.send("get", "/v1/bots?limit=0"),
      schema_rejects=True, code="validation_error"),
    c("bots-list-bad-cursor", "get", "/v1/bots", 400, lambda x: x.send("get", "/v1/bots?cursor=zz"),
      code="validation_error"),
    c("bots-list-jwt", "get", "/v1/bots", 200, lambda x: x.send("get", "/v1/bots",
                                                              client=x.client(token=jwt(x)))),
    c("bots-no-credentials", "get", "/v1/bots", 401, lambda x: x.send("get", "/v1/bots",
                                                                    client=APIClient())),
    c("bots-bad-key", "get", "/v1/bots", 401,
      lambda x: x.send("get", "/v1/bots", client=x.client(token="cbk_nope_" + "y" * 40))),
    c("bots-chat-key-403", "get", "/v1/bots", 403,
      lambda x: x.send("get", "/v1/bots", client=x.client(x.side.chat_key))),
    c("bots-rate-limited", "get", "/v1/bots", 429,
      lambda x: x.send("get", "/v1/bots", client=x.client(limited_key(x))), code="rate_limited"),
    c("bots-create-minimal", "post", "/v1/bots", 201,
      lambda x: x.send("post", "/v1/bots", {"name": new_name("bot")})),
    c("bots-create-full", "post", "/v1/bots", 201,
      lambda x: x.send("post", "/v1/bots", {
          "name": new_name("bot"), "description": "", "system_prompt": "Be brief.", "model": "",
          "temperature": 0.5, "max_output_tokens": 256, "dataset_ids": [str(x.side.dataset.pk)],
          "scope_id": None, "top_k": 3, "is_active": False})),
    c("bots-create-no-name", "post", "/v1/bots", 400,
      lambda x: x.send("post", "/v1/bots", {"top_k": 3}), schema_rejects=True,
      code="validation_error"),
    c("bots-create-top-k-0", "post", "/v1/bots", 400,
      lambda x: x.send("post", "/v1/bots", {"name": "x", "top_k": 0}), schema_rejects=True,
      code="validation_error"),
    c("bots-create-unknown-dataset", "post", "/v1/bots", 400,
      lambda x: x.send("post", "/v1/bots", {"name": "x", "dataset_ids": [MISSING]}),
      code="validation_error"),
    c("bots-create-malformed", "post", "/v1/bots", 400,
      lambda x: x.send("post", "/v1/bots", "{", fmt="application/json"), code="invalid_request"),
    c("bots-create-415", "post", "/v1/bots", 415,
      lambda x: x.send("post", "/v1/bots", "name=x", fmt="text/plain")),
    c("bots-create-413", "post", "/v1/bots", 413,
      lambda x: x.send("post", "/v1/bots", {"name": "x", "description": "d" * 4000})),
    c("bots-create-409", "post", "/v1/bots", 409,
      lambda x: x.send("post", "/v1/bots", {"name": x.side.bot.name}), code="conflict"),
    c("bots-get", "get", BOT, 200, lambda x: x.send("get", f"/v1/bots/{x.side.bot.pk}")),
    c("bots-get-404", "get", BOT, 404, lambda x: x.send("get", f"/v1/bots/{MISSING}")),
    c("bots-patch", "patch", BOT, 200,
      lambda x: x.send("patch", f"/v1/bots/{x.side.bot.pk}", {"temperature": 0.1})),
    c("bots-patch-empty", "patch", BOT, 200, lambda x: x.send("patch", f"/v1/bots/{x.side.bot.pk}", {})),
    c("bots-patch-scope-null", "patch", BOT, 200,
      lambda x: x.send("patch", f"/v1/bots/{x.side.bot.pk}", {"scope_id": None})),
    c("bots-patch-bad", "patch", BOT, 400,
      lambda x: x.send("patch", f"/v1/bots/{x.side.bot.pk}", {"temperature": 3}),
      schema_rejects=True, code="validation_error"),
    c("bots-delete", "delete", BOT, 204, lambda x: x.send("delete", f"/v1/bots/{x.side.bot.pk}")),
    c("bots-delete-404", "delete", BOT, 404, lambda x: x.send("delete", f"/v1/bots/{MISSING}")),
    # --- scopes ---------------------------------------------------------------------------
    c("scopes-list", "get", "/v1/scopes", 200, lambda x: x.send("get", "/v1/scopes")),
    c("scopes-create-minimal", "post", "/v1/scopes", 201,
      lambda x: x.send("post", "/v1/scopes", {"name": new_name("scope")})),
    c("scopes-create-full", "post", "/v1/scopes", 201,
      lambda x: x.send("post", "/v1/scopes", {
          "name": new_name("scope"), "description": "Billing.", "allowed_topics": ["invoices"],
          "blocked_topics": ["law"], "refusal_message": "No.", "min_relevance": 0.3,
          "answer_without_context": True, "pii_entities": ["EMAIL", "IBAN"], "tags": ["faq"]})),
    c("scopes-create-bad-pii", "post", "/v1/scopes", 400,
      lambda x: x.send("post", "/v1/scopes", {"name": "x", "pii_entities": ["NAME"]}),
      schema_rejects=True, code="validation_error"),
    c("scopes-get", "get", SCOPE, 200, lambda x: x.send("get", f"/v1/scopes/{x.side.scope.pk}")),
    c("scopes-patch", "patch", SCOPE, 200,
      lambda x: x.send("patch", f"/v1/scopes/{x.side.scope.pk}", {"min_relevance": 0.5})),
    c("scopes-patch-bad", "patch", SCOPE, 400,
      lambda x: x.send("patch", f"/v1/scopes/{x.side.scope.pk}", {"min_relevance": 2}),
      schema_rejects=True, code="validation_error"),
    c("scopes-delete-in-use", "delete", SCOPE, 409,
      lambda x: x.send("delete", f"/v1/scopes/{x.side.scope.pk}"), code="conflict"),
    c("scopes-delete", "delete", SCOPE, 204,
      lambda x: x.send("delete", "/v1/scopes/" + x.send(
          "post", "/v1/scopes", {"name": new_name("scope")}).json()["id"])),
    # --- datasets -------------------------------------------------------------------------
    c("datasets-list", "get", "/v1/datasets", 200, lambda x: x.send("get", "/v1/datasets?tag=faq")),
    c("datasets-create", "post", "/v1/datasets", 201,
      lambda x: x.send("post", "/v1/datasets", {"name": new_name("ds")})),
    c("datasets-create-full", "post", "/v1/datasets", 201,
      lambda x: x.send("post", "/v1/datasets", {
          "name": new_name("ds"), "description": "d", "tags": ["a"], "chunk_size": 256,
          "chunk_overlap": 32, "language": "english"})),
    c("datasets-create-bad-language", "post", "/v1/datasets", 400,
      lambda x: x.send("post", "/v1/datasets", {"name": "x", "language": "klingon"}),
      schema_rejects=True, code="validation_error"),
    c("datasets-create-overlap", "post", "/v1/datasets", 400,
      lambda x: x.send("post", "/v1/datasets",
                       {"name": "x", "chunk_size": 64, "chunk_overlap": 64}),
      code="validation_error"),
    c("datasets-get", "get", DATASET, 200,
      lambda x: x.send("get", f"/v1/datasets/{x.side.dataset.pk}")),
    c("datasets-patch", "patch", DATASET, 200,
      lambda x: x.send("patch", f"/v1/datasets/{x.side.dataset.pk}", {"description": "new"})),
    c("datasets-patch-409", "patch", DATASET, 409,
      lambda x: x.send("patch", f"/v1/datasets/{x.side.dataset.pk}", {"name": x.send(
          "post", "/v1/datasets", {"name": new_name("ds")}).json()["name"]}), code="conflict"),
    c("datasets-delete", "delete", DATASET, 204,
      lambda x: x.send("delete", f"/v1/datasets/{x.side.dataset.pk}")),
    # --- documents ------------------------------------------------------------------------
    c("documents-list", "get", DOCS, 200,
      lambda x: x.send("get", f"/v1/datasets/{x.side.dataset.pk}/documents?status=ready&tag=faq")),
    c("documents-list-bad-status", "get", DOCS, 400,
      lambda x: x.send("get", f"/v1/datasets/{x.side.dataset.pk}/documents?status=done"),
      schema_rejects=True, code="validation_error"),
    c("documents-upload", "post", DOCS, 202,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"file": upload(), "title": "Notes", "tags": "a,b"}, fmt="multipart")),
    c("documents-upload-again", "post", DOCS, 200,
      lambda x: [x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                        {"file": upload()}, fmt="multipart") for _ in range(2)][-1]),
    c("documents-upload-no-file", "post", DOCS, 400,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"title": "x"}, fmt="multipart"),
      schema_rejects=True, code="validation_error"),
    c("documents-url", "post", DOCS, 202,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"url": "https://example.com/handbook.html", "tags": ["web"]})),
    c("documents-records", "post", DOCS, 202,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents", {"records": [
          {"title": "One", "text": "First.", "metadata": {"k": 1}, "tags": ["t"],
           "external_id": "one"}, {"title": "T", "text": "Second."}]})),
    c("documents-records-none", "post", DOCS, 400,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents", {"records": []}),
      schema_rejects=True, code="validation_error"),
    c("documents-records-no-text", "post", DOCS, 400,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"records": [{"title": "x"}]}),
      schema_rejects=True, code="validation_error"),
    c("documents-url-and-records", "post", DOCS, 400,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"url": "https://example.com/", "records": [{"title": "T", "text": "x"}]}),
      schema_rejects=True, code="validation_error"),
    c("documents-415", "post", DOCS, 415,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents", "hello",
                       fmt="text/plain")),
    c("documents-upload-413", "post", DOCS, 413,
      lambda x: x.send("post", f"/v1/datasets/{x.side.dataset.pk}/documents",
                       {"file": upload(content=b"# Big\n\n" + b"x" * 6000)}, fmt="multipart")),
    c("documents-dataset-404", "post", DOCS, 404,
      lambda x: x.send("post", f"/v1/datasets/{MISSING}/documents", {"records": [{"title": "T", "text": "x"}]})),
    c("documents-get", "get", DOC, 200, lambda x: x.send("get", f"/v1/documents/{x.side.document.pk}")),
    c("documents-reingest", "post", DOC + "/reingest", 202,
      lambda x: x.send("post", f"/v1/documents/{x.side.document.pk}/reingest")),
    c("documents-reingest-queued", "post", DOC + "/reingest", 409,
      lambda x: x.send("post", f"/v1/documents/{queued_document(x)}/reingest"), code="conflict"),
    c("documents-reingest-404", "post", DOC + "/reingest", 404,
      lambda x: x.send("post", f"/v1/documents/{MISSING}/reingest")),
    c("documents-delete", "delete", DOC, 204,
      lambda x: x.send("delete", f"/v1/documents/{x.side.document.pk}")),
    # --- api keys -------------------------------------------------------------------------
    c("keys-list", "get", "/v1/api-keys", 200, lambda x: x.send("get", "/v1/api-keys")),
    c("keys-list-revoked", "get", "/v1/api-keys", 200,
      lambda x: x.send("get", "/v1/api-keys?include_revoked=true")),
    c("keys-create-minimal", "post", "/v1/api-keys", 201,
      lambda x: x.send("post", "/v1/api-keys", {"role": "chat"})),
    c("keys-create-full", "post", "/v1/api-keys", 201,
      lambda x: x.send("post", "/v1/api-keys", {
          "name": "widget", "role": "admin", "bot_ids": [str(x.side.bot.pk)],
          "rate_limit_per_minute": None, "expires_at": "2099-01-01T00:00:00Z"})),
    c("keys-create-bad-role", "post", "/v1/api-keys", 400,
      lambda x: x.send("post", "/v1/api-keys", {"role": "owner"}), schema_rejects=True,
      code="validation_error"),
    c("keys-patch", "patch", KEY, 200,
      lambda x: x.send("patch", f"/v1/api-keys/{x.side.chat_key.pk}",
                       {"rate_limit_per_minute": 30, "expires_at": None})),
    c("keys-patch-revoked", "patch", KEY, 409,
      lambda x: [x.send("delete", f"/v1/api-keys/{x.side.chat_key.pk}"),
                 x.send("patch", f"/v1/api-keys/{x.side.chat_key.pk}", {"name": "n"})][-1],
      code="conflict"),
    c("keys-delete", "delete", KEY, 204,
      lambda x: x.send("delete", f"/v1/api-keys/{x.side.chat_key.pk}")),
    c("keys-delete-404", "delete", KEY, 404, lambda x: x.send("delete", f"/v1/api-keys/{MISSING}")),
    # --- usage, audit logs ----------------------------------------------------------------
    c("usage-day", "get", "/v1/usage", 200,
      lambda x: x.send("get", "/v1/usage?group_by=day&from=2020-01-01&to=2099-12-31")),
    c("usage-bot", "get", "/v1/usage", 200, lambda x: x.send("get", "/v1/usage?group_by=bot")),
    c("usage-api-key", "get", "/v1/usage", 200,
      lambda x: x.send("get", "/v1/usage?group_by=api_key&from=2020-01-01T00:00:00Z")),
    c("usage-bad-group", "get", "/v1/usage", 400, lambda x: x.send("get", "/v1/usage?group_by=week"),
      schema_rejects=True, code="validation_error"),
    c("usage-from-after-to", "get", "/v1/usage", 400,
      lambda x: x.send("get", "/v1/usage?from=2026-02-01&to=2026-01-01"), code="validation_error"),
    c("audit-logs", "get", "/v1/audit-logs", 200,
      lambda x: x.send("get", "/v1/audit-logs?action=bot.create&from=2020-01-01&limit=10")),
    c("audit-logs-by-key", "get", "/v1/audit-logs", 200,
      lambda x: [x.send("patch", f"/v1/bots/{x.side.bot.pk}", {"name": "renamed"}),
                 x.send("get", "/v1/audit-logs")][-1]),
    c("audit-logs-bad-from", "get", "/v1/audit-logs", 400,
      lambda x: x.send("get", "/v1/audit-logs?from=yesterday"), schema_rejects=True,
      code="validation_error"),
    # --- conversations --------------------------------------------------------------------
    c("conversations-list", "get", "/v1/conversations", 200,
      lambda x: x.send("get", f"/v1/conversations?bot_id={x.side.bot.pk}&from=2020-01-01")),
    c("conversations-list-chat-key", "get", "/v1/conversations", 200,
      lambda x: x.send("get", "/v1/conversations", client=x.client(x.side.chat_key))),
    c("conversations-list-bad-bot", "get", "/v1/conversations", 400,
      lambda x: x.send("get", "/v1/conversations?bot_id=nope"), schema_rejects=True,
      code="validation_error"),
    c("conversations-get", "get", CONV, 200,
      lambda x: x.send("get", f"/v1/conversations/{x.side.conversation.pk}?limit=1")),
    c("conversations-get-404", "get", CONV, 404,
      lambda x: x.send("get", f"/v1/conversations/{MISSING}")),
    c("conversations-delete", "delete", CONV, 204,
      lambda x: x.send("delete", f"/v1/conversations/{x.side.conversation.pk}")),
]  # fmt: skip


def parameters_of(schema, template: str, method: str) -> list[dict[str, Any]]:
    """An operation's parameters, $refs resolved."""
    found = []
    for parameter in schema["paths"][template][method].get("parameters", []):
        if "$ref" in parameter:
            parameter = schema["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        found.append(parameter)
    return found


def query_params_conform(schema, case: Case, path: str) -> list[str]:
    """Each query parameter sent is declared, and its value valid by the declared schema."""
    declared = {
        p["name"]: p["schema"]
        for p in parameters_of(schema, case.template, case.method)
        if p["in"] == "query"
    }
    problems = []
    for name, raw in parse_qsl(urlsplit(path).query, keep_blank_values=True):
        if name not in declared:
            problems.append(f"?{name} is not declared")
            continue
        value: Any = raw
        kind = declared[name].get("type")
        if kind in {"integer", "boolean"}:
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
        problems += [f"?{name}={raw}: {e.message}" for e in validator_of(schema, declared[name])
                     .iter_errors(value)]  # fmt: skip
    return problems


def body_errors(schema, case: Case, sent: Sent) -> list[str]:
    request_body = schema["paths"][case.template][case.method].get("requestBody")
    assert request_body is not None, f"{case.id}: the schema declares no request body"
    content = request_body["content"]
    assert sent.media_type in content, f"{case.id}: {sent.media_type} is not declared"
    body = sent.body
    if sent.media_type == "multipart/form-data":  # the file as the string the schema names
        body = {k: ("<file>" if hasattr(v, "read") else v) for k, v in body.items()}
    return [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator_of(schema, content[sent.media_type]["schema"]).iter_errors(body)
    ]


@override_settings(
    DATA_UPLOAD_MAX_MEMORY_SIZE=2000, INGEST_MAX_UPLOAD_BYTES=5000, AUTH_FAILURES_PER_MINUTE=2
)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_endpoint_answers_as_the_schema_says(schema, world, case: Case):
    ctx = Ctx(world.a)
    response = case.run(ctx)
    assert response.status_code == case.status, response.content[:500]
    if case.code is not None:
        assert response.json()["error"]["code"] == case.code, response.json()
    if case.status == 400 and case.code == "validation_error":
        assert response.json()["error"]["details"], response.json()
    assert_conforms(schema, case.method, case.template, response)
    if client_id := response.wsgi_request.META.get("HTTP_X_REQUEST_ID"):
        parameters = parameters_of(schema, case.template, case.method)
        assert ("X-Request-ID", "header") in {(p["name"], p["in"]) for p in parameters}
        assert response["X-Request-ID"] == client_id
    sent = ctx.sent[-1]
    if case.status < 300 or case.schema_rejects:
        assert not (problems := query_params_conform(schema, case, sent.path)) or (
            case.schema_rejects
        ), problems
    if sent.body is not None and sent.media_type is not None:
        problems = body_errors(schema, case, sent)
        if case.status < 300:
            assert not problems, f"{case.id}: a body the server accepts is invalid: {problems}"
        elif case.schema_rejects:
            assert problems, f"{case.id}: the schema allows a body the server refuses"
    elif case.schema_rejects:
        assert query_params_conform(
            schema, case, sent.path
        ), f"{case.id}: the schema allows a query the server refuses"


def test_every_operation_of_the_schema_is_exercised():
    from chatbot_site.tests.test_schema import CONTRACT

    exercised = {(case.method, case.template) for case in CASES}
    exercised |= {("post", "/v1/chat"), ("post", "/v1/retrieve")}  # test_schema.py
    assert exercised >= CONTRACT, CONTRACT - exercised
    statuses = {case.status for case in CASES}
    assert statuses >= {200, 201, 202, 204, 400, 401, 403, 404, 409, 413, 415, 429}


@pytest.mark.django_db(transaction=True)  # the chat view reads the key on the pool's threads
def test_a_chat_message_role_the_server_refuses_the_schema_refuses(schema):
    """``messages[].role`` was any string in the schema; the server takes user and assistant."""
    alpha = build_tenant("alpha")
    client = alpha.client(alpha.chat_key)
    body_schema = schema["paths"]["/v1/chat"]["post"]["requestBody"]["content"]
    request_schema = body_schema["application/json"]["schema"]
    for role, accepted in (("user", True), ("assistant", True), ("system", False), ("bot", False)):
        body = {"bot_id": str(alpha.bot.pk), "messages": [{"role": role, "content": "Hello?"}]}
        if role == "assistant":
            body["messages"].append({"role": "user", "content": "And?"})
        valid = not list(validator_of(schema, request_schema).iter_errors(body))
        assert valid is accepted, role
        if not accepted:
            refused = client.post("/v1/chat", body, format="json")
            assert refused.status_code == 400, refused.content
            assert "messages" in json.dumps(refused.json()["error"]["details"])
            assert_conforms(schema, "post", "/v1/chat", refused)


def resolved(schema, node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema through ``$ref`` and a single ``allOf`` (drf-spectacular's way of
    making a referenced enum nullable)."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = node["allOf"][0]
    if "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_what_every_answer_carries_is_required_and_its_values_enumerated(schema, world):
    """A field in every answer is required (a generated client makes an optional one a maybe),
    and a field of a fixed set of values is that enum, in answers as in requests."""
    components = schema["components"]["schemas"]
    created = world.a.client().post("/v1/datasets", {"name": "fresh"}, format="json").json()
    assert created["document_count"] == 0
    assert "document_count" in components["DatasetOutput"]["required"]
    assert "token_type" in components["TokenOutput"]["required"]

    def enum(component: str, name: str, *, items: bool = False) -> list[Any]:
        node = components[component]["properties"][name]
        return resolved(schema, node["items"] if items else node)["enum"]

    assert enum("ScopeOutput", "pii_entities", items=True) == [
        "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS"
    ]  # fmt: skip
    assert enum("MessageOutput", "role") == ["user", "assistant"]
    assert enum("ChatMessageInputRequest", "role") == ["user", "assistant"]
    assert "cancelled" in enum("MessageOutput", "finish_reason")
    assert components["MessageOutput"]["properties"]["finish_reason"]["nullable"] is True
    assert enum("AuditLogOutput", "actor_type") == ["api_key", "staff", "system"]
    assert "english" in enum("DatasetOutput", "language")
    citations = components["MessageOutput"]["properties"]["citations"]
    assert citations["items"] == {"$ref": "#/components/schemas/CitationOutput"}
    refusal = components["MessageOutput"]["properties"]["refusal"]
    assert resolved(schema, refusal) == components["RefusalOutput"]
    for component, name in (("ConversationOutput", "metadata"), ("AuditLogOutput", "changes")):
        assert components[component]["properties"][name]["type"] == "object", component
    limit = parameters_of(schema, "/v1/conversations/{conversation_id}", "get")
    assert {p["name"]: p["schema"].get("default") for p in limit}["limit"] == 1000

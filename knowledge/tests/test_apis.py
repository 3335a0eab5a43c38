from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from knowledge.models import Chunk, Document
from knowledge.tests.factories import DatasetFactory, DocumentFactory
from tenants.models import AuditLog
from tests.plans import explain, rows_read
from tests.world import build_tenant

pytestmark = pytest.mark.django_db

BOT_FIELDS = {
    "id", "name", "description", "system_prompt", "model", "temperature", "max_output_tokens",
    "dataset_ids", "scope_id", "top_k", "is_active", "created_at", "updated_at",
}  # fmt: skip


@pytest.fixture
def side():
    return build_tenant("acme")


def actions(side) -> list[str]:
    return list(
        AuditLog.objects.for_tenant(side.tenant)
        .filter(actor_type="api_key")
        .order_by("created_at")
        .values_list("action", flat=True)
    )


def test_create_bot_with_datasets_and_scope(side):
    client = side.client()
    response = client.post(
        "/v1/bots",
        {
            "name": "Helpdesk",
            "system_prompt": "Be brief.",
            "temperature": 0.1,
            "dataset_ids": [str(side.dataset.pk)],
            "scope_id": str(side.scope.pk),
            "top_k": 8,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == BOT_FIELDS
    assert body["dataset_ids"] == [str(side.dataset.pk)]
    assert body["scope_id"] == str(side.scope.pk)
    assert (body["top_k"], body["is_active"], body["model"]) == (8, True, None)
    entry = AuditLog.objects.for_tenant(side.tenant).get(action="bot.create", target_id=body["id"])
    assert entry.actor_id == str(side.admin_key.id)
    assert entry.changes["dataset_ids"] == [str(side.dataset.pk)]
    assert entry.request_id and entry.ip == "127.0.0.1"


def test_a_bots_model_reads_null_while_unset_and_null_or_empty_unsets_it(side):
    """It read "" (no model name) while the bot follows CHAT_MODEL, and null was refused."""
    client = side.client()
    path = f"/v1/bots/{side.bot.pk}"
    assert client.get(path).json()["model"] is None
    set_ = client.patch(path, {"model": "gpt-4o-mini"}, format="json")
    assert set_.status_code == 200 and set_.json()["model"] == "gpt-4o-mini"
    for unset in (None, ""):
        response = client.patch(path, {"model": unset}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["model"] is None
        side.bot.refresh_from_db()
        assert side.bot.model == ""  # stored blank: the service's default
        client.patch(path, {"model": "gpt-4o-mini"}, format="json")
    created = client.post("/v1/bots", {"name": "Pinned", "model": None}, format="json")
    assert created.status_code == 201 and created.json()["model"] is None


def test_bot_validation_errors_name_each_field(side):
    response = side.client().post(
        "/v1/bots", {"temperature": 3, "top_k": 0, "dataset_ids": ["nope"]}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert {"name", "temperature", "top_k"} <= set(error["details"])
    assert any(key.startswith("dataset_ids") for key in error["details"])


def test_duplicate_bot_name_is_409(side):
    response = side.client().post("/v1/bots", {"name": side.bot.name}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_patch_bot_changes_only_what_was_sent_and_audits_it(side):
    other = DatasetFactory(tenant=side.tenant)
    response = side.client().patch(
        f"/v1/bots/{side.bot.pk}",
        {"top_k": 3, "dataset_ids": [str(other.pk), str(side.dataset.pk)], "scope_id": None},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["top_k"] == 3 and body["name"] == side.bot.name and body["scope_id"] is None
    assert sorted(body["dataset_ids"]) == sorted([str(other.pk), str(side.dataset.pk)])
    entry = AuditLog.objects.for_tenant(side.tenant).get(action="bot.update")
    assert set(entry.changes) == {"top_k", "scope_id", "dataset_ids"}


def test_a_bots_datasets_are_one_audit_entry_and_changing_them_updates_the_bot(side):
    client = side.client()
    created = client.post(
        "/v1/bots", {"name": "Helpdesk", "dataset_ids": [str(side.dataset.pk)]}, format="json"
    ).json()
    assert actions(side) == ["bot.create"]  # it was bot.create and bot.datasets_set
    other = client.post("/v1/datasets", {"name": "More"}, format="json").json()["id"]
    patched = client.patch(
        f"/v1/bots/{created['id']}", {"dataset_ids": [other]}, format="json"
    ).json()
    assert patched["dataset_ids"] == [other]
    assert patched["updated_at"] > created["updated_at"]
    assert actions(side) == ["bot.create", "dataset.create", "bot.update"]


def test_patch_with_nothing_new_writes_no_audit_entry(side):
    side.client().patch(f"/v1/bots/{side.bot.pk}", {"top_k": side.bot.top_k}, format="json")
    assert "bot.update" not in actions(side)


def test_delete_bot_is_204_and_audited(side):
    client = side.client()
    assert client.delete(f"/v1/bots/{side.bot.pk}").status_code == 204
    assert client.get(f"/v1/bots/{side.bot.pk}").status_code == 404
    assert "bot.delete" in actions(side)


def test_key_with_a_bot_allow_list_sees_only_those_bots(side):
    from tenants.tests.factories import ApiKeyFactory

    limited = ApiKeyFactory(tenant=side.tenant, bot_ids=[side.bot.pk])
    client = side.client(limited)
    other = side.client().post("/v1/bots", {"name": "Other"}, format="json").json()
    listed = [b["id"] for b in client.get("/v1/bots").json()["data"]]
    assert listed == [str(side.bot.pk)]
    assert client.get(f"/v1/bots/{other['id']}").status_code == 404
    assert client.delete(f"/v1/bots/{other['id']}").status_code == 404
    refused = client.post("/v1/bots", {"name": "Mine"}, format="json")
    assert refused.status_code == 403


def test_lists_paginate_with_a_stable_cursor(side):
    client = side.client()
    for n in range(5):
        client.post("/v1/datasets", {"name": f"set {n}"}, format="json")
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/datasets", {"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [d["name"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 == len(set(seen))
    assert seen[:5] == [f"set {n}" for n in reversed(range(5))]  # newest first


def forged_cursor(created: str, pk: str = "11111111-1111-1111-1111-111111111111") -> str:
    return base64.urlsafe_b64encode(f"{created}|{pk}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "x"},
        {"cursor": "%%%"},
        {"cursor": forged_cursor("2026-12-06T00:00:00")},  # no offset
        {"cursor": forged_cursor("0001-01-01T00:00:00+01:00")},  # before year 1 in UTC
        {"cursor": forged_cursor("2026-12-06T00:00:00+00:00", "not-a-uuid")},
    ],
)
def test_bad_paging_parameters_are_field_errors(side, params):
    response = side.client().get("/v1/datasets", params)
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) <= {"limit", "cursor"}


def test_a_cursor_with_an_offset_postgresql_refuses_is_read_in_utc(side):
    """Python reads offsets up to ±23:59, PostgreSQL only to ±15:59: a forged cursor at +20:00
    was a 500 on every list."""
    client = side.client()
    for n in range(3):
        client.post("/v1/datasets", {"name": f"set {n}"}, format="json")
    response = client.get("/v1/datasets", {"cursor": forged_cursor("2999-01-01T00:00:00+20:00")})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 4  # the three and the world's own, all older


def test_list_query_count_does_not_grow_with_rows(side, django_assert_max_num_queries):
    client = side.client()
    for n in range(10):
        client.post(
            "/v1/bots", {"name": f"bot {n}", "dataset_ids": [str(side.dataset.pk)]}, format="json"
        )
    with django_assert_max_num_queries(4):  # key, page of bots, their dataset links
        response = client.get("/v1/bots")
    assert len(response.json()["data"]) == 11


def test_dataset_crud_and_overlap_rule(side):
    client = side.client()
    bad = client.post(
        "/v1/datasets", {"name": "x", "chunk_size": 100, "chunk_overlap": 100}, format="json"
    )
    assert bad.status_code == 400 and "chunk_overlap" in bad.json()["error"]["details"]
    created = client.post(
        "/v1/datasets", {"name": "Manuals", "tags": ["manual"], "language": "german"}, format="json"
    ).json()
    assert (created["chunk_size"], created["chunk_overlap"], created["language"]) == (
        512,
        64,
        "german",
    )
    patched = client.patch(f"/v1/datasets/{created['id']}", {"chunk_overlap": 600}, format="json")
    assert patched.status_code == 400
    assert client.get("/v1/datasets", {"tag": "manual"}).json()["data"][0]["id"] == created["id"]
    assert client.delete(f"/v1/datasets/{created['id']}").status_code == 204


def test_deleting_a_dataset_removes_its_documents_and_chunks(side):
    assert side.client().delete(f"/v1/datasets/{side.dataset.pk}").status_code == 204
    assert not Document.objects.for_tenant(side.tenant).exists()
    assert not Chunk.objects.for_tenant(side.tenant).exists()


def test_documents_list_filters_and_read_shape(side):
    DocumentFactory(tenant=side.tenant, dataset=side.dataset, status="failed",
                    error_code="no_text", error_message="No extractable text.")  # fmt: skip
    client = side.client()
    failed = client.get(f"/v1/datasets/{side.dataset.pk}/documents", {"status": "failed"}).json()
    assert [d["status"] for d in failed["data"]] == ["failed"]
    assert failed["data"][0]["error"] == {"code": "no_text", "message": "No extractable text."}
    tagged = client.get(f"/v1/datasets/{side.dataset.pk}/documents", {"tag": "faq"}).json()
    assert [d["id"] for d in tagged["data"]] == [str(side.document.pk)]
    one = client.get(f"/v1/documents/{side.document.pk}").json()
    assert set(one) == {
        "id", "dataset_id", "title", "source", "content_type", "tags", "status", "error",
        "chunk_count", "token_count", "content_hash", "created_at", "updated_at", "ingested_at",
        "pipeline_version",
    }  # fmt: skip
    assert one["error"] is None
    bad = client.get(f"/v1/datasets/{side.dataset.pk}/documents", {"status": "done"})
    assert bad.status_code == 400


def test_document_delete_removes_chunks_and_is_audited(side):
    assert side.client().delete(f"/v1/documents/{side.document.pk}").status_code == 204
    assert not Chunk.objects.for_tenant(side.tenant).filter(document_id=side.document.pk).exists()
    assert "document.delete" in actions(side)


def test_a_datasets_document_list_reads_that_datasets_page_only(side):
    """A page of an older dataset read past every newer document of the tenant's others."""
    older = DatasetFactory(tenant=side.tenant, name="older")
    newer = DatasetFactory(tenant=side.tenant, name="newer")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for dataset, count, offset in ((older, 100, 0), (newer, 300, 1000)):
        Document.all_tenants.bulk_create(
            Document(
                tenant=side.tenant,
                dataset=dataset,
                source_type="record",
                content_hash=hashlib.sha256(f"{dataset.name}-{n}".encode()).hexdigest(),
                created_at=start + dt.timedelta(minutes=offset + n),
            )
            for n in range(count)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_document")
    with CaptureQueriesContext(connection) as queries:
        page = side.client().get(f"/v1/datasets/{older.pk}/documents", {"limit": 20}).json()
    assert len(page["data"]) == 20 and page["next_cursor"]
    (sql,) = [
        q["sql"]
        for q in queries.captured_queries
        if "LIMIT 21" in q["sql"] and "knowledge_document" in q["sql"]
    ]
    assert rows_read(explain(sql)) <= 25  # not the 300 newer ones, nor all 100 sorted


@pytest.mark.parametrize(
    ("path", "typo", "field"),
    [
        ("/v1/bots/{bot}", {"is_actve": False}, "is_active"),
        ("/v1/scopes/{scope}", {"min_relevence": 0.9}, "min_relevance"),
        ("/v1/datasets/{dataset}", {"chunksize": 100}, "chunk_size"),
        ("/v1/api-keys/{key}", {"rate_limit": 5}, "rate_limit_per_minute"),
    ],
)
def test_a_misspelt_field_is_a_validation_error_not_a_silent_no_op(side, path, typo, field):
    """PATCH {"is_actve": false} answered 200 and changed nothing: the client believed its bot
    off. A field the resource does not have is 400 naming it; nothing is changed."""
    client = side.client()
    url = path.format(bot=side.bot.pk, scope=side.scope.pk, dataset=side.dataset.pk,
                      key=side.chat_key.pk)  # fmt: skip
    before = client.get(url).json() if "api-keys" not in path else None
    response = client.patch(url, {"name": "renamed", **typo}, format="json")
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    (name,) = typo
    assert set(details) == {name}
    assert field in details[name][0]  # the message lists the fields there are
    if before is not None:
        assert client.get(url).json() == before


def test_a_resources_own_read_only_fields_sent_back_are_ignored(side):
    """A client may PATCH what it read (id, created_at ...): those are not misspellings."""
    client = side.client()
    body = client.get(f"/v1/bots/{side.bot.pk}").json()
    response = client.patch(f"/v1/bots/{side.bot.pk}", {**body, "name": "Renamed"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed"
    created = client.post("/v1/datasets", {"name": "D2", "typo_field": 1}, format="json")
    assert created.status_code == 400
    assert set(created.json()["error"]["details"]) == {"typo_field"}


def test_tags_in_json_bodies_are_kept_once_each_trimmed_case_as_sent(side):
    """Tags are a set (a filter matches any): a repeated tag is kept once, as a scope's repeated
    ``pii_entities`` are; it was stored as sent (``["x", "x"]``). Case is kept (``X`` is
    another tag) and whitespace trimmed, as before."""
    client = side.client()
    dataset = client.post(
        "/v1/datasets", {"name": "Tagged", "tags": ["a", " a ", "A", "a"]}, format="json"
    )
    assert dataset.status_code == 201, dataset.json()
    assert dataset.json()["tags"] == ["a", "A"]
    added = client.post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"records": [{"title": "T", "text": "Tagged record.", "tags": [" x ", "x", "X"]}]},
        format="json",
    )
    assert added.status_code == 202, added.json()
    assert added.json()["data"][0]["tags"] == ["x", "X"]
    scope = client.patch(f"/v1/scopes/{side.scope.pk}", {"tags": ["faq", "faq"]}, format="json")
    assert scope.json()["tags"] == ["faq"]

# mypy: disable-error-code="arg-type,misc"
"""With a real Celery worker: the tokens a document's ingestion embeds are the tenant's usage
(``/v1/usage``) and count against its monthly quota, which is checked before they are spent.
Ingestion embedded every chunk and counted it nowhere: a tenant could upload without limit
past a quota that stopped its chats, and ``/v1/usage`` did not show the tokens."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations.tests.chatkit import ask, chat
from knowledge.embeddings import get_embedder
from knowledge.ingestion import embedding_input
from knowledge.models import Chunk, Document
from tests.processes import celery_worker, child_env, wait_for
from tests.world import TenantWorld, build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

GUIDE = (
    "# Refund guide\n\n## Cards\n\nRefunds are paid to the original card within five business "
    "days.\n\n## Invoices\n\nAn invoice can be corrected within thirty days of its date.\n"
)


def upload(side: TenantWorld, name: str, text: str) -> str:
    response = side.client().post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"file": SimpleUploadedFile(name, text.encode())},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def finished(document_id: str) -> bool:
    return Document.all_tenants.filter(pk=document_id, status__in=["ready", "failed"]).exists()


def ingest(side: TenantWorld, name: str, text: str, log, **env: str) -> dict:
    """Upload through the API, let a real worker ingest it; the document as the API shows it."""
    with celery_worker(child_env(**env), log):
        document_id = upload(side, name, text)
        try:
            wait_for(lambda: finished(document_id), timeout=120, what="the document")
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
    return side.client().get(f"/v1/documents/{document_id}").json()


def embedded_tokens(document_id: str) -> int:
    """What the worker sent the embedding model, by its tokenizer: each chunk with the
    document's title and heading path in front (``embedding_input``)."""
    document = Document.all_tenants.get(pk=document_id)
    chunks = Chunk.all_tenants.filter(document_id=document_id).order_by("ordinal")
    count = get_embedder().count_tokens
    return sum(count(embedding_input(document.title, chunk)) for chunk in chunks)


def usage(side: TenantWorld, group_by: str) -> dict:
    response = side.client().get("/v1/usage", {"group_by": group_by})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_documents_embedding_tokens_are_in_usage_and_in_the_months_quota(tmp_path):
    side = build_tenant("acme")
    before = usage(side, "bot")
    document = ingest(side, "refunds.md", GUIDE, tmp_path / "worker.log")
    assert document["status"] == "ready", document

    spent = embedded_tokens(document["id"])
    assert spent > document["token_count"] > 0  # the title and headings are embedded too
    after = usage(side, "bot")
    # A document belongs to a dataset, not to a bot or a key: its row has neither.
    ingestion = [row for row in after["data"] if row["bot_id"] is None]
    assert [(r["embedding_tokens"], r["requests"], r["total_tokens"]) for r in ingestion] == [
        (spent, 0, spent)
    ]
    assert after["totals"]["embedding_tokens"] == before["totals"]["embedding_tokens"] + spent
    used = before["quota"]["used_this_month"] + spent
    assert after["quota"]["used_this_month"] == used
    by_key = usage(side, "api_key")["data"]
    assert [r["embedding_tokens"] for r in by_key if r["api_key_id"] is None] == [spent]


def test_chat_is_refused_once_ingestion_has_spent_the_quota(tmp_path):
    side = build_tenant("acme")
    used = usage(side, "day")["quota"]["used_this_month"]
    side.tenant.monthly_token_quota = used + 10_000
    side.tenant.save(update_fields=["monthly_token_quota"])
    document = ingest(side, "refunds.md", GUIDE, tmp_path / "worker.log")
    assert document["status"] == "ready", document
    side.tenant.monthly_token_quota = used + embedded_tokens(document["id"])
    side.tenant.save(update_fields=["monthly_token_quota"])

    refused = chat(side.client(side.chat_key), **ask(side, "How are refunds paid?"))
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "quota_exceeded"


def test_a_document_the_quota_has_no_room_for_fails_readably_before_it_is_embedded(tmp_path):
    side = build_tenant("acme")
    before = usage(side, "day")
    side.tenant.monthly_token_quota = before["quota"]["used_this_month"] + 5  # five tokens left
    side.tenant.save(update_fields=["monthly_token_quota"])
    document = ingest(side, "refunds.md", GUIDE, tmp_path / "worker.log")

    assert document["status"] == "failed", document
    assert document["error"]["code"] == "quota_exceeded"
    message = document["error"]["message"]
    assert message.startswith(
        "The tenant's monthly token quota has 5 tokens left; embedding this document takes "
    ), message
    assert "Reingest it once the quota has room: it resets on " in message
    assert Chunk.all_tenants.filter(document_id=document["id"]).count() == 0
    after = usage(side, "day")
    assert after["totals"] == before["totals"]  # nothing embedded, nothing spent


def test_with_a_provider_a_documents_tokens_are_the_ones_it_billed(tmp_path):
    from tests.fake_openai import fake_openai

    side = build_tenant("acme")
    before = usage(side, "day")["totals"]["embedding_tokens"]
    with fake_openai() as provider:
        document = ingest(side, "refunds.md", GUIDE, tmp_path / "worker.log",
                          EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                          OPENAI_API_KEY="sk-test-not-a-real-key-000000")  # fmt: skip
        # the fake provider bills a token per word of each input
        billed = sum(
            len(text.split())
            for request in provider.requests
            if request["path"].endswith("/embeddings")
            for text in request["body"]["input"]
        )
    assert document["status"] == "ready", document
    assert billed > 0
    assert usage(side, "day")["totals"]["embedding_tokens"] == before + billed

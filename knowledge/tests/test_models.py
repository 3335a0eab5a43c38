from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from pgvector.django import CosineDistance

from knowledge import vector_index
from knowledge.models import Chunk, Dataset, DocumentStatus
from knowledge.tests.factories import (
    BotDatasetFactory,
    ChunkFactory,
    DatasetFactory,
    DocumentFactory,
    unit_vector,
)
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def matches(chunk: Chunk, query: str, config: str = "english") -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector @@ websearch_to_tsquery(%s::regconfig, %s) "
            "FROM knowledge_chunk WHERE id = %s",
            [config, query, chunk.pk],
        )
        return bool(cursor.fetchone()[0])


def test_same_content_twice_in_a_dataset_is_refused():
    document = DocumentFactory()
    with pytest.raises(IntegrityError, match="document_hash_unique"), transaction.atomic():
        DocumentFactory(
            dataset=document.dataset, tenant=document.tenant, content_hash=document.content_hash
        )


def test_same_content_in_another_dataset_is_allowed():
    document = DocumentFactory()
    other = DocumentFactory(tenant=document.tenant, content_hash=document.content_hash)
    assert other.dataset_id != document.dataset_id


def test_content_hash_must_be_sha256_hex():
    with pytest.raises(IntegrityError, match="sha256"), transaction.atomic():
        DocumentFactory(content_hash="not-a-hash")


def test_failed_document_must_say_why():
    with pytest.raises(IntegrityError, match="failed_has_error"), transaction.atomic():
        DocumentFactory(status=DocumentStatus.FAILED, error_code=None)
    DocumentFactory(status=DocumentStatus.FAILED, error_code="no_text", error_message="Empty.")


def test_chunk_cannot_belong_to_another_tenants_document():
    theirs = DocumentFactory()
    with pytest.raises(IntegrityError, match="tenant_fk"), transaction.atomic():
        ChunkFactory(tenant=TenantFactory(), document=theirs)
        connection.check_constraints()


def test_chunk_dataset_must_be_its_documents_dataset():
    document = DocumentFactory()
    elsewhere = DatasetFactory(tenant=document.tenant)
    with pytest.raises(IntegrityError, match="dataset_document_fk"), transaction.atomic():
        ChunkFactory(tenant=document.tenant, document=document, dataset=elsewhere)
        connection.check_constraints()


def test_bot_cannot_search_another_tenants_dataset():
    link = BotDatasetFactory()
    with pytest.raises(IntegrityError, match="tenant_fk"), transaction.atomic():
        BotDatasetFactory(tenant=link.tenant, bot=link.bot, dataset=DatasetFactory())
        connection.check_constraints()


def test_dataset_overlap_must_be_smaller_than_chunk_size():
    with pytest.raises(IntegrityError, match="overlap"), transaction.atomic():
        DatasetFactory(chunk_size=100, chunk_overlap=100)


def test_full_text_vector_is_kept_in_step_by_the_database():
    chunk = ChunkFactory(text="Invoices are emailed on the first business day.")
    assert matches(chunk, "invoice email")  # stemmed: invoices → invoic, emailed → email
    assert not matches(chunk, "refund")

    chunk.text = "Refunds take five days."
    chunk.save(update_fields=["text"])
    assert matches(chunk, "refund")
    assert not matches(chunk, "invoice")


def test_full_text_vector_follows_the_chunk_language():
    simple = ChunkFactory(text="Invoices are emailed.", language="simple")
    assert matches(simple, "invoices", config="simple")
    assert not matches(simple, "invoice", config="simple")  # no stemming in `simple`


def test_a_language_is_compared_as_text_and_an_unknown_one_matches_nothing():
    english = DatasetFactory(language="english")
    french = DatasetFactory(tenant=english.tenant, language="french")
    datasets = Dataset.objects.for_tenant(english.tenant)
    assert list(datasets.filter(language="french")) == [french]
    assert set(datasets.filter(language__in=["english", "french"])) == {english, french}
    assert not datasets.filter(language="klingon").exists()
    assert not datasets.exclude(language=F("language")).exists()  # a column: compared as is


def test_cosine_search_orders_chunks_by_similarity():
    dataset = DatasetFactory()
    near = ChunkFactory(tenant=dataset.tenant, document__dataset=dataset, embedding=unit_vector(1))
    far = ChunkFactory(tenant=dataset.tenant, document__dataset=dataset, embedding=unit_vector(7))
    query = [0.0] * settings.EMBEDDING_DIMENSIONS
    query[1], query[7] = 0.9, 0.1

    ranked = list(
        Chunk.objects.for_tenant(dataset.tenant)
        .annotate(distance=CosineDistance("embedding", query))
        .order_by("distance")
    )
    assert ranked == [near, far]
    assert len(ranked[0].embedding) == settings.EMBEDDING_DIMENSIONS


def test_embedding_dimension_is_enforced_by_the_column():
    with pytest.raises(Exception, match="dimensions"), transaction.atomic():
        ChunkFactory(embedding=[1.0, 0.0, 0.0])


def test_migration_creates_the_vector_index_of_the_configured_kind():
    with connection.cursor() as cursor:
        assert vector_index.current_kind(cursor) == settings.VECTOR_INDEX_KIND


@pytest.mark.parametrize("kind", ["ivfflat", "hnsw"])
def test_vector_index_can_be_rebuilt_as_either_kind(kind):
    out = io.StringIO()
    call_command("vector_index", "--rebuild", "--kind", kind, "--no-concurrently", stdout=out)
    assert json.loads(out.getvalue())["kind"] == kind
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM knowledge_chunk ORDER BY embedding <=> %s::vector LIMIT 5",
            [str(unit_vector(0))],
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert vector_index.INDEX_NAME in plan


def test_ivfflat_lists_follow_pgvector_guidance():
    assert vector_index.ivfflat_lists(0) == 1
    assert vector_index.ivfflat_lists(50_000) == 50
    assert vector_index.ivfflat_lists(4_000_000) == 2000

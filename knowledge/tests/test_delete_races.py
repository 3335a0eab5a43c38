"""Deleting a dataset or a document while a worker stores its chunks: the delete waits for the
worker and removes what it stored, never failing at commit on the chunks' foreign key (a 500
found by fuzzing the served API)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from knowledge.models import BotDataset, Chunk, Dataset, Document
from knowledge.services import bot_datasets_set, dataset_delete, document_delete
from knowledge.tests.factories import ChunkFactory, DatasetFactory
from knowledge.tests.fixtures import ingest_interrupted
from tenants.services import Actor
from tests.world import build_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def contend(hold: Callable[[], None], contender: Callable[[], None]) -> list[BaseException]:
    """``hold`` runs in a transaction left open; ``contender`` starts meanwhile, on its own
    connection, and once it is seen waiting on a lock the held transaction commits. The
    exceptions either raised, for the test to assert on."""
    held, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with transaction.atomic():
                hold()
                held.set()
                go.wait(timeout=30)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    def other() -> None:
        try:
            contender()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    threads[0].start()
    assert held.wait(timeout=30)
    threads[1].start()
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock():
        assert time.monotonic() < deadline, "the contender never waited for the held transaction"
        time.sleep(0.01)
    go.set()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def race(document: Document, delete: Callable[[], None]) -> list[BaseException]:
    """A worker's store (the document's row locked, chunks inserted, not yet committed), the
    delete started meanwhile and seen waiting on a lock, then the worker's commit."""

    def store() -> None:
        Document.all_tenants.select_for_update().get(pk=document.pk)
        ChunkFactory(tenant=document.tenant, document=document, ordinal=99)

    return contend(store, delete)


def test_deleting_a_dataset_while_a_worker_stores_chunks():
    side = build_tenant("racy")
    tenant, dataset, dataset_id = side.tenant, side.dataset, side.dataset.pk  # delete() clears pk

    errors = race(
        side.document,
        lambda: dataset_delete(tenant=tenant, actor=Actor.system("tests"), dataset=dataset),
    )

    assert errors == []
    assert not Dataset.all_tenants.filter(pk=dataset_id).exists()
    assert not Document.all_tenants.filter(dataset_id=dataset_id).exists()
    assert not Chunk.all_tenants.filter(dataset_id=dataset_id).exists()
    assert Chunk.all_tenants.filter(tenant_id=tenant.pk).count() == 0


def test_deleting_a_document_while_a_worker_stores_its_chunks():
    side = build_tenant("racy-doc")
    tenant, document, document_id = side.tenant, side.document, side.document.pk

    errors = race(
        document,
        lambda: document_delete(tenant=tenant, actor=Actor.system("tests"), document=document),
    )

    assert errors == []
    assert not Document.all_tenants.filter(pk=document_id).exists()
    assert not Chunk.all_tenants.filter(document_id=document_id).exists()


def test_adding_a_document_to_a_dataset_deleted_meanwhile_is_404():
    """The dataset was found, then deleted by another request before this one committed: the
    new document's foreign key fails at commit, which answers 404 as for any missing dataset."""
    side = build_tenant("racy-add")
    tenant, dataset, dataset_id = side.tenant, side.dataset, side.dataset.pk
    answers: list = []

    def add() -> None:
        client = side.client()
        client.raise_request_exception = False
        answers.append(
            client.post(
                f"/v1/datasets/{dataset_id}/documents",
                {"records": [{"title": "T", "text": "Added while the dataset goes."}]},
                format="json",
            )
        )

    errors = contend(
        lambda: dataset_delete(tenant=tenant, actor=Actor.system("tests"), dataset=dataset), add
    )

    assert errors == []
    assert answers[0].status_code == 404, answers[0].content
    error = answers[0].json()["error"]
    assert (error["code"], error["message"]) == ("not_found", "Dataset not found.")
    assert not Document.all_tenants.filter(dataset_id=dataset_id).exists()


def test_two_requests_setting_a_bots_datasets_at_once_take_turns():
    """Both inserted the link to the dataset they shared: the second's waited for the first's
    and failed on the unique index, a 500 (served: 2 of 12 concurrent PATCHes). Now the second
    waits for the first and its datasets are the bot's."""
    side = build_tenant("racy-links")
    tenant, bot = side.tenant, side.bot
    other = DatasetFactory(tenant=tenant)
    answers: list = []

    def both() -> None:
        bot_datasets_set(tenant=tenant, actor=Actor.system("tests"), bot=bot,
                         datasets=[side.dataset, other])  # fmt: skip

    def only_other() -> None:
        client = side.client()
        client.raise_request_exception = False
        answers.append(
            client.patch(f"/v1/bots/{bot.pk}", {"dataset_ids": [str(other.pk)]}, format="json")
        )

    assert contend(both, only_other) == []
    assert answers[0].status_code == 200, answers[0].content
    assert answers[0].json()["dataset_ids"] == [str(other.pk)]
    links = BotDataset.objects.for_tenant(tenant).filter(bot=bot)
    assert list(links.values_list("dataset_id", flat=True)) == [other.pk]


def test_linking_a_bot_to_a_dataset_deleted_meanwhile_is_a_400():
    """The dataset was found, then deleted by another request before the link committed: its
    foreign key failed at commit, a 500. Now the link waits for the deletion and the dataset
    is missing, as if it had been from the start."""
    side = build_tenant("racy-link-gone")
    tenant, bot = side.tenant, side.bot
    doomed = DatasetFactory(tenant=tenant)
    doomed_id = doomed.pk
    answers: list = []

    def link() -> None:
        client = side.client()
        client.raise_request_exception = False
        body = {"dataset_ids": [str(side.dataset.pk), str(doomed_id)]}
        answers.append(client.patch(f"/v1/bots/{bot.pk}", body, format="json"))

    errors = contend(
        lambda: dataset_delete(tenant=tenant, actor=Actor.system("tests"), dataset=doomed), link
    )

    assert errors == []
    assert answers[0].status_code == 400, answers[0].content
    assert answers[0].json()["error"]["details"] == {
        "dataset_ids": [f"Dataset not found: {doomed_id}"]
    }
    assert not BotDataset.all_tenants.filter(dataset_id=doomed_id).exists()


def test_deleting_a_dataset_while_a_bot_is_linked_to_it_deletes_the_link_too():
    """The deletion collected the dataset's links while a request was adding one: that link,
    committed first, failed the deletion at commit on its foreign key (a 500)."""
    side = build_tenant("racy-unlink")
    tenant, bot = side.tenant, side.bot
    doomed = DatasetFactory(tenant=tenant)
    doomed_id = doomed.pk

    def link() -> None:
        bot_datasets_set(tenant=tenant, actor=Actor.system("tests"), bot=bot,
                         datasets=[side.dataset, doomed])  # fmt: skip

    errors = contend(
        link, lambda: dataset_delete(tenant=tenant, actor=Actor.system("tests"), dataset=doomed)
    )

    assert errors == []
    assert not Dataset.all_tenants.filter(pk=doomed_id).exists()
    assert not BotDataset.all_tenants.filter(dataset_id=doomed_id).exists()
    links = BotDataset.objects.for_tenant(tenant).filter(bot=bot)
    assert list(links.values_list("dataset_id", flat=True)) == [side.dataset.pk]


def test_reingesting_a_document_deleted_meanwhile_is_404():
    """Found, then deleted by another request before its row could be locked: the locked read
    raised DoesNotExist, a 500 (served: a reingest racing a dataset's deletion)."""
    side = build_tenant("racy-reingest")
    tenant, document, document_id = side.tenant, side.document, side.document.pk
    Document.all_tenants.filter(pk=document_id).update(status="ready")
    answers: list = []

    def reingest() -> None:
        client = side.client()
        client.raise_request_exception = False
        answers.append(client.post(f"/v1/documents/{document_id}/reingest"))

    errors = contend(
        lambda: document_delete(tenant=tenant, actor=Actor.system("tests"), document=document),
        reingest,
    )

    assert errors == []
    assert answers[0].status_code == 404, answers[0].content
    assert answers[0].json()["error"]["message"] == "Document not found."


def test_a_document_deleted_while_it_is_embedded_stops_at_the_next_window(settings):
    """A document deleted while its embedding ran was embedded to the end (42 s of a worker
    for a 20,000-word upload deleted after a second, and a paid provider's tokens) before the
    run found its claim gone. It stops before the next window now."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from knowledge.intake import document_add_upload

    side = build_tenant("deleted-while-embedded")
    side.dataset.chunk_size, side.dataset.chunk_overlap = 32, 0
    side.dataset.save()
    paragraphs = [f"Paragraph {n} says something of its own about topic {n}." for n in range(600)]
    document = document_add_upload(
        tenant=side.tenant, actor=Actor.system("tests"), dataset=side.dataset,
        upload=SimpleUploadedFile("long.md", "\n\n".join(paragraphs).encode()),
    ).document  # fmt: skip

    result, windows = ingest_interrupted(
        settings,
        document.pk,
        lambda: document_delete(tenant=side.tenant, actor=Actor.system("tests"), document=document),
    )
    assert result == "claim_lost"
    assert windows == 1  # of two: more than EMBED_WINDOW chunks
    assert not Document.all_tenants.filter(pk=document.pk).exists()
    assert not Chunk.all_tenants.filter(document_id=document.pk).exists()


def reingesting(settings, slug: str) -> tuple[Any, Document]:
    """A ready document of more than one embedding window, just queued again."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from knowledge.ingestion import document_ingest
    from knowledge.intake import document_add_upload, document_reingest

    side = build_tenant(slug)
    side.dataset.chunk_size, side.dataset.chunk_overlap = 32, 0
    side.dataset.save()
    paragraphs = [f"Paragraph {n} says something of its own about topic {n}." for n in range(600)]
    paragraphs[7] = "Refunds reach the card they were paid with within five working days."
    document = document_add_upload(
        tenant=side.tenant, actor=Actor.system("tests"), dataset=side.dataset,
        upload=SimpleUploadedFile("long.md", "\n\n".join(paragraphs).encode()),
    ).document  # fmt: skip
    assert document_ingest(document_id=document.pk) == "ready"
    document_reingest(tenant=side.tenant, actor=Actor.system("tests"), document=document)
    document.refresh_from_db()
    return side, document


def refund_hits(side) -> list[Any]:
    from knowledge.retrieval import search, search_space_for_bot

    space = search_space_for_bot(side.bot)
    vector = [0.0] * settings_dimensions()
    hits = search(space, query="refunds card", query_vector=vector, top_k=5, mode="text")
    return [h.chunk_id for h in hits if "Refunds reach" in h.text]


def settings_dimensions() -> int:
    from django.conf import settings

    return int(settings.EMBEDDING_DIMENSIONS)


def test_a_document_being_reingested_is_searched_as_it_was_and_not_queued_twice(settings):
    """While its new run embeds, the version ingested before is what retrieval finds (it found
    nothing of the document from the reingest until the run was ready), the document reads as
    processing with the earlier version's counts, and a second reingest is a 409 that changes
    nothing; at the end the new chunks have replaced the old, none twice."""
    side, document = reingesting(settings, "reingest-in-flight")
    old = refund_hits(side)
    chunks = document.chunk_count
    assert chunks > 256  # more than one window: the run is seen between two
    seen: dict[str, Any] = {}

    def meanwhile() -> None:
        seen["hits"] = refund_hits(side)
        client = side.client()
        seen["again"] = client.post(f"/v1/documents/{document.pk}/reingest").status_code
        seen["read"] = client.get(f"/v1/documents/{document.pk}").json()

    result, windows = ingest_interrupted(settings, document.pk, meanwhile)
    assert (result, windows) == ("ready", 2)
    assert old and seen["hits"] == old
    assert seen["again"] == 409
    assert (seen["read"]["status"], seen["read"]["chunk_count"]) == ("processing", chunks)
    assert seen["read"]["ingested_at"] is not None
    new = refund_hits(side)
    assert len(new) == 1 and new != old
    assert Chunk.all_tenants.filter(document_id=document.pk).count() == chunks


def test_a_document_deleted_while_it_is_reingested_goes_whole(settings):
    side, document = reingesting(settings, "deleted-while-reingested")
    assert refund_hits(side)

    result, windows = ingest_interrupted(
        settings,
        document.pk,
        lambda: document_delete(tenant=side.tenant, actor=Actor.system("tests"), document=document),
    )
    assert (result, windows) == ("claim_lost", 1)
    assert not Document.all_tenants.filter(pk=document.pk).exists()
    assert not Chunk.all_tenants.filter(document_id=document.pk).exists()
    assert refund_hits(side) == []

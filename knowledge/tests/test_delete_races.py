"""Deleting a dataset or a document while a worker stores its chunks: the delete waits for the
worker and removes what it stored, never failing at commit on the chunks' foreign key (a 500
found by fuzzing the served API)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, connections, transaction

from knowledge.models import Chunk, Dataset, Document
from knowledge.services import dataset_delete, document_delete
from knowledge.tests.factories import ChunkFactory
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
                {"records": [{"text": "Added while the dataset goes."}]},
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

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


def race(document: Document, delete: Callable[[], None]) -> list[BaseException]:
    """A worker's store (the document's row locked, chunks inserted, not yet committed), the
    delete started meanwhile and seen waiting on a lock, then the worker's commit."""
    stored, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with transaction.atomic():
                Document.all_tenants.select_for_update().get(pk=document.pk)
                ChunkFactory(tenant=document.tenant, document=document, ordinal=99)
                stored.set()
                go.wait(timeout=30)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    def deleter() -> None:
        try:
            delete()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker), threading.Thread(target=deleter)]
    threads[0].start()
    assert stored.wait(timeout=30)
    threads[1].start()
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock():
        assert time.monotonic() < deadline, "the delete never waited for the worker"
        time.sleep(0.01)
    go.set()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_deleting_a_dataset_while_a_worker_stores_chunks():
    side = build_tenant("racy")
    tenant, dataset = side.tenant, side.dataset

    errors = race(
        side.document,
        lambda: dataset_delete(tenant=tenant, actor=Actor.system("tests"), dataset=dataset),
    )

    assert errors == []
    assert not Dataset.all_tenants.filter(pk=dataset.pk).exists()
    assert not Document.all_tenants.filter(dataset_id=dataset.pk).exists()
    assert not Chunk.all_tenants.filter(dataset_id=dataset.pk).exists()


def test_deleting_a_document_while_a_worker_stores_its_chunks():
    side = build_tenant("racy-doc")
    tenant, document = side.tenant, side.document

    errors = race(
        document,
        lambda: document_delete(tenant=tenant, actor=Actor.system("tests"), document=document),
    )

    assert errors == []
    assert not Document.all_tenants.filter(pk=document.pk).exists()
    assert not Chunk.all_tenants.filter(document_id=document.pk).exists()

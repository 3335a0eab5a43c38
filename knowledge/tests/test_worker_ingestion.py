"""With a real Celery worker process: upload → ready; a worker killed with SIGKILL mid-document
loses nothing (the reaper hands the document to the next worker; no duplicate chunks)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from knowledge.models import Chunk, Document, DocumentStatus
from knowledge.tasks import enqueue_ingest
from knowledge.tests.factories import DocumentFactory
from knowledge.tests.fixtures import make_docx, make_pdf
from tests.processes import celery_worker, child_env, wait_for
from tests.world import TenantWorld, build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def status(document_id) -> str:
    return Document.all_tenants.values_list("status", flat=True).get(pk=document_id)


def test_uploads_of_every_format_become_ready_through_a_real_worker(tmp_path):
    side = build_tenant("acme")
    client = side.client()
    files = {
        "guide.md": b"# Guide\n\nAsk the bot about refunds.",
        "report.pdf": make_pdf(["Revenue grew.", "Costs fell."]),
        "handbook.docx": make_docx(),
        "page.html": b"<html><body><main><h1>FAQ</h1><p>Shipping is free.</p></main></body></html>",
        "data.json": b'[{"q": "Is it free?", "a": "Yes."}]',
    }
    with celery_worker(child_env(LOG_LEVEL="INFO"), tmp_path / "worker.log"):
        ids = []
        for name, data in files.items():
            response = client.post(
                f"/v1/datasets/{side.dataset.pk}/documents",
                {"file": SimpleUploadedFile(name, data)},
                format="multipart",
            )
            assert response.status_code == 202, response.content
            ids.append(response.json()["id"])
        try:
            wait_for(lambda: all(status(i) in {"ready", "failed"} for i in ids), timeout=120,
                     what="documents to finish")  # fmt: skip
        except AssertionError:
            raise AssertionError((tmp_path / "worker.log").read_text()[-4000:]) from None
    for document_id in ids:
        body = client.get(f"/v1/documents/{document_id}").json()
        assert body["status"] == "ready", body
        assert body["chunk_count"] >= 1 and body["ingested_at"]


def test_an_upload_is_read_in_the_charset_its_part_declares_through_a_real_worker(tmp_path):
    """Short texts in a legacy encoding were guessed, and guessed wrong: KOI8-R as Shift_JIS,
    Latin-1 as Windows-1250 ("crčme"), Windows-1251 as a box-drawing code page."""
    side = build_tenant("acme")
    client = side.client()
    cases = [  # name, declared charset, bytes sent, text expected
        ("note.txt", "windows-1251", "Привет, мир".encode("cp1251"), "Привет, мир"),
        ("guide.md", "KOI8-R", "Оплата по счёту в течение 14 дней.".encode("koi8-r"),
         "Оплата по счёту в течение 14 дней."),
        ("page.html", "iso-8859-1",
         "<html><body><p>Café crème brûlée à volonté.</p></body></html>".encode("latin-1"),
         "Café crème brûlée à volonté."),
        ("prices.csv", "shift_jis", "請求書は月末に届きます。".encode("shift_jis"),
         "請求書は月末に届きます。"),
        ("wide.txt", "utf-16le", "Широкий текст.".encode("utf-16-le"), "Широкий текст."),
        # UTF-8 under a legacy label is UTF-8 (read first); a charset nobody knows is guessed.
        ("mislabelled.txt", "windows-1251", "Ставка НДС 20%.".encode(), "Ставка НДС 20%."),
        ("unknown.txt", "x-no-such-charset", "Доставка бесплатно".encode("cp1251"), None),
    ]  # fmt: skip
    ids = []
    for name, charset, data, _text in cases:
        upload = SimpleUploadedFile(name, data, content_type=f"text/plain; charset={charset}")
        response = client.post(
            f"/v1/datasets/{side.dataset.pk}/documents", {"file": upload}, format="multipart"
        )
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    with celery_worker(child_env(), tmp_path / "worker.log"):
        try:
            wait_for(lambda: all(status(i) in {"ready", "failed"} for i in ids), timeout=120,
                     what="documents to finish")  # fmt: skip
        except AssertionError:
            raise AssertionError((tmp_path / "worker.log").read_text()[-4000:]) from None
    for document_id, (name, _charset, _data, text) in zip(ids, cases, strict=True):
        body = client.get(f"/v1/documents/{document_id}").json()
        assert body["status"] == "ready", body
        if text is not None:
            chunks = Chunk.all_tenants.filter(document_id=document_id)
            assert [c.text for c in chunks] == [text], name
            assert (
                body["content_hash"]
                == hashlib.sha256(Document.all_tenants.get(pk=document_id).file.read()).hexdigest()
            )
    # The text is the content: the same text sent as UTF-8 is the document already stored.
    again = client.post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"file": SimpleUploadedFile("note-utf8.txt", "Привет, мир".encode())},
        format="multipart",
    )
    assert (again.status_code, again.json()["id"]) == (200, ids[0])


LONG_MARKDOWN = "# Long\n\n" + "\n\n".join(
    f"Paragraph {n}: " + " ".join(f"detail{n}x{m}" for m in range(60)) for n in range(150)
)
FAKE_KEY = "sk-test-not-a-real-key-000000"


@contextlib.contextmanager
def a_held_provider() -> Iterator[tuple[Any, threading.Event, threading.Event]]:
    """The fake provider, holding every embeddings request until ``released`` (a document read
    mid-embedding whatever the machine's speed): it, ``embedding`` (a request arrived) and
    ``released``."""
    from tests.fake_openai import fake_openai

    embedding, released = threading.Event(), threading.Event()

    def hold() -> None:
        embedding.set()
        released.wait(timeout=60)

    with fake_openai() as provider:
        provider.on_embeddings = hold
        try:
            yield provider, embedding, released
        finally:
            released.set()


def upload_long(side: TenantWorld) -> str:
    response = side.client().post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"file": SimpleUploadedFile("long.md", LONG_MARKDOWN.encode())},
        format="multipart",
    )
    return str(response.json()["id"])


def test_a_worker_killed_mid_document_loses_nothing(tmp_path):
    """The first worker is killed while it embeds the document (the provider holds its request:
    mid-document whatever the machine's speed; a document embedded by the local model twice
    took over a minute of the suite); the next worker reads it again at once — the redelivered
    task takes it over, or the reaper queues it again, as its holder is known dead — not after
    the lease (``INGEST_LEASE_SECONDS``, 600 s here): it stayed ``processing`` until then."""
    side = build_tenant("acme")
    with a_held_provider() as (provider, embedding, released):
        env = child_env(EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                        OPENAI_API_KEY=FAKE_KEY, INGEST_REAP_SECONDS="1",
                        INGEST_LEASE_SECONDS="600")  # fmt: skip
        with celery_worker(env, tmp_path / "worker.log") as first:
            document_id = upload_long(side)
            wait_for(embedding.is_set, timeout=60, what="the worker to embed the document")
            assert status(document_id) == "processing"
            os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, mid-document
            first.wait(timeout=30)
        provider.on_embeddings = None
        released.set()
        assert status(document_id) == "processing"

        log = tmp_path / "worker2.log"
        with celery_worker(env, log, beat=True):
            try:
                wait_for(lambda: status(document_id) == "ready", timeout=120,
                         what="ready after the crash")  # fmt: skip
            except AssertionError:
                raise AssertionError(log.read_text()[-4000:]) from None
    document = Document.all_tenants.get(pk=document_id)
    chunks = Chunk.all_tenants.filter(document_id=document_id)
    assert chunks.count() == document.chunk_count > 10
    assert chunks.values("ordinal").distinct().count() == document.chunk_count
    assert document.attempts == 2
    assert document.status == DocumentStatus.READY


def test_a_slow_live_holder_keeps_its_document_until_it_is_killed(tmp_path):
    """A second worker (with the reaper every second) is sent the document's task while the
    first still reads it, slowly: it skips it, and the reaper leaves it, as long as the first is
    alive; the first killed, the second reads it again at once, not after the lease."""
    side = build_tenant("acme")
    with a_held_provider() as (provider, embedding, released):
        env = child_env(EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                        OPENAI_API_KEY=FAKE_KEY, INGEST_REAP_SECONDS="1",
                        INGEST_LEASE_SECONDS="600", LOG_LEVEL="INFO")  # fmt: skip
        with celery_worker(env, tmp_path / "worker.log") as first:
            document_id = upload_long(side)
            wait_for(embedding.is_set, timeout=60, what="the worker to embed the document")
            held = Document.all_tenants.values("processing_started_at", "attempts").get(
                pk=document_id
            )
            log = tmp_path / "worker2.log"
            with celery_worker(env, log, beat=True):
                enqueue_ingest(document_id)  # as a redelivered message
                try:
                    wait_for(lambda: "'skipped'" in log.read_text(), timeout=60,
                             what="the second worker to skip it")  # fmt: skip
                    # Two reaper runs after the skip that left it.
                    skipped_at = log.read_text().index("'skipped'")
                    wait_for(
                        lambda: log.read_text()[skipped_at:].count("'requeued': 0") >= 2,
                        timeout=60,
                        what="the reaper",
                    )
                except AssertionError:
                    raise AssertionError(log.read_text()[-4000:]) from None
                row = Document.all_tenants.values(
                    "status", "processing_started_at", "attempts"
                ).get(pk=document_id)
                assert row == {"status": "processing", **held}

                os.killpg(first.pid, signal.SIGKILL)
                first.wait(timeout=30)
                provider.on_embeddings = None
                released.set()
                try:
                    wait_for(lambda: status(document_id) == "ready", timeout=120,
                             what="ready after the first worker was killed")  # fmt: skip
                except AssertionError:
                    raise AssertionError(log.read_text()[-4000:]) from None
    assert Document.all_tenants.get(pk=document_id).attempts == 2


def test_a_worker_stopped_gracefully_mid_document_gives_it_back_uncounted(tmp_path):
    """SIGTERM to the worker's process group (`make run`'s Ctrl-C, `make stop`) while it reads
    a document: the document is queued again at once and the run is not an attempt. Before,
    the pool child died with it: ``processing`` until the lease, and three Ctrl-Cs failed the
    document ``worker_crash``."""
    side = build_tenant("acme")
    with a_held_provider() as (provider, embedding, released):
        env = child_env(EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                        OPENAI_API_KEY=FAKE_KEY, INGEST_LEASE_SECONDS="600")  # fmt: skip
        log = tmp_path / "worker.log"
        with celery_worker(env, log) as first:
            document_id = upload_long(side)
            wait_for(embedding.is_set, timeout=60, what="the worker to embed the document")
            os.killpg(first.pid, signal.SIGTERM)
            first.wait(timeout=30)
        row = Document.all_tenants.values("status", "attempts").get(pk=document_id)
        assert row == {"status": "queued", "attempts": 0}, log.read_text()[-4000:]

        provider.on_embeddings = None
        released.set()
        with celery_worker(env, tmp_path / "worker2.log"):  # its message was queued again
            wait_for(lambda: status(document_id) == "ready", timeout=120, what="ready")
    assert Document.all_tenants.get(pk=document_id).attempts == 1


def upload_small_documents(side: TenantWorld, count: int) -> list[str]:
    """``count`` small Markdown files uploaded through the API (queued): their ids."""
    ids = []
    for n in range(count):
        response = side.client().post(
            f"/v1/datasets/{side.dataset.pk}/documents",
            {"file": SimpleUploadedFile(f"{n}.md", f"# Doc {n}\n\nBody {n}.".encode())},
            format="multipart",
        )
        ids.append(response.json()["id"])
    return ids


def test_documents_queued_before_a_redis_restart_still_finish(tmp_path, redis_client):
    side = build_tenant("acme")
    ids = upload_small_documents(side, 3)
    redis_client.flushdb()  # Redis restarted without persistence: the queued messages are gone
    assert all(status(i) == "queued" for i in ids)
    # The real schedule finds them: celery beat runs the reaper (every second here, with a
    # one-second lease), which re-enqueues documents queued for longer than a lease.
    log = tmp_path / "worker.log"
    env = child_env(INGEST_REAP_SECONDS="1", INGEST_LEASE_SECONDS="1")
    with celery_worker(env, log, beat=True):
        try:
            wait_for(lambda: all(status(i) == "ready" for i in ids), timeout=120, what="ready")
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
    assert "documents_reaped" in log.read_text()


def test_a_document_the_embedding_provider_keeps_failing_ends_failed_through_a_real_worker(
    tmp_path,
):
    """After the task's retries the worker logged an UnpickleableExceptionWrapper and left the
    document queued with no error, for the reaper to requeue every lease, forever."""
    from tests.fake_openai import fake_openai

    side = build_tenant("acme")
    log = tmp_path / "worker.log"
    with fake_openai() as provider:
        provider.fail_with = [503] * 1000
        env = child_env(EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                        OPENAI_API_KEY="sk-test-not-a-real-key-000000",
                        EMBEDDING_RETRY_BASE_SECONDS="0.01", INGEST_TRANSIENT_ATTEMPTS="2")  # fmt: skip
        with celery_worker(env, log):
            response = side.client().post(
                f"/v1/datasets/{side.dataset.pk}/documents",
                {"file": SimpleUploadedFile("guide.md", b"# Guide\n\nAsk about refunds.")},
                format="multipart",
            )
            document_id = response.json()["id"]
            try:
                wait_for(lambda: status(document_id) == "failed", timeout=60, what="failed")
            except AssertionError:
                raise AssertionError(log.read_text()[-4000:]) from None
        assert len(provider.requests) == 2 * 5  # two runs of five tries
    body = side.client().get(f"/v1/documents/{document_id}").json()
    assert body["error"] == {
        "code": "embedding_unavailable",
        "message": "The embedding provider did not answer after 2 attempts; reingest to try again.",
    }
    assert "Unpickleable" not in log.read_text()


def test_the_reaper_does_not_wait_behind_the_queued_documents(tmp_path):
    """Celery beat queued the reaper behind every document waiting to be ingested: a document
    whose worker died stayed ``processing`` until the whole backlog was through (a tenant's
    thousand uploads: hours). The periodic tasks now have a queue of their own, which every
    worker also takes from, so the reaper runs as soon as a worker is free."""
    from tests.fake_openai import fake_openai

    side = build_tenant("acme")
    dead = DocumentFactory(
        tenant=side.tenant,
        dataset=side.dataset,
        status=DocumentStatus.PROCESSING,  # its worker was killed an hour ago
        processing_started_at=timezone.now() - dt.timedelta(hours=1),
        attempts=1,
    )
    backlog = upload_small_documents(side, 8)

    def reaped() -> bool:
        row = Document.all_tenants.values("status", "attempts").get(pk=dead.pk)
        return row["status"] != DocumentStatus.PROCESSING or row["attempts"] > 1

    log = tmp_path / "worker.log"
    with fake_openai() as provider:
        provider.embedding_pieces, provider.embedding_piece_delay = 2, 1.5  # 1.5 s a document
        env = child_env(EMBEDDING_BACKEND="openai", OPENAI_BASE_URL=provider.url,
                        OPENAI_API_KEY="sk-test-not-a-real-key-000000",
                        INGEST_REAP_SECONDS="1", INGEST_LEASE_SECONDS="600")  # fmt: skip
        with celery_worker(env, log, beat=True):
            try:
                wait_for(reaped, timeout=180, what="the reaper")
            except AssertionError:
                raise AssertionError(log.read_text()[-4000:]) from None
            waiting = Document.all_tenants.filter(pk__in=backlog, status="queued").count()
    assert waiting >= len(backlog) // 2, f"reaped with {waiting} of {len(backlog)} still queued"

"""The pipeline in-process, on the real database, the real sandbox and the real local model."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from knowledge.ingestion import claim, document_ingest, reap
from knowledge.intake import document_add_upload
from knowledge.models import Chunk, Document, DocumentStatus
from knowledge.retrieval import retrieve, search_space_for_bot
from knowledge.tests.fixtures import ingest_interrupted, make_encrypted_pdf, make_pdf
from tenants.models import Tenant
from tenants.services import Actor
from tests.world import build_tenant

pytestmark = pytest.mark.django_db

GUIDE = (
    b"# Service guide\n\nThe service answers questions from your documents.\n\n"
    b"## Keys\n\nRotate API keys every ninety days. Revoke a key to end its tokens at once.\n\n"
    b"## Limits\n\nEach key may send sixty requests a minute unless its tenant says otherwise.\n"
)


@pytest.fixture
def side():
    return build_tenant("acme")


def add(side, name: str, data: bytes) -> Document:
    added = document_add_upload(tenant=side.tenant, actor=Actor.system("tests"),
                                dataset=side.dataset, upload=SimpleUploadedFile(name, data))  # fmt: skip
    return added.document


def test_markdown_document_becomes_ready_with_embedded_chunks(side):
    document = add(side, "guide.md", GUIDE)
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY
    assert document.chunk_count == 3 and document.token_count > 30
    assert document.ingested_at is not None and document.attempts == 1
    assert set(document.timings) == {"parse", "chunk", "embed", "screen", "store"}
    chunks = list(
        Chunk.objects.for_tenant(side.tenant).filter(document=document).order_by("ordinal")
    )
    assert [c.heading_path for c in chunks] == [
        ["Service guide"],
        ["Service guide", "Keys"],
        ["Service guide", "Limits"],
    ]
    assert all(len(c.embedding) == settings.EMBEDDING_DIMENSIONS for c in chunks)
    assert {c.embedding_model for c in chunks} == {"all-MiniLM-L6-v2"}
    assert all(abs(sum(x * x for x in c.embedding) - 1) < 1e-3 for c in chunks)
    assert chunks[1].dataset_id == side.dataset.pk and chunks[1].tenant_id == side.tenant.pk


def test_reingesting_replaces_chunks_without_duplicates(side):
    document = add(side, "guide.md", GUIDE)
    document_ingest(document_id=document.pk)
    before = list(
        Chunk.objects.for_tenant(side.tenant)
        .filter(document=document)
        .values_list("text", flat=True)
    )
    Document.all_tenants.filter(pk=document.pk).update(status=DocumentStatus.QUEUED)
    document_ingest(document_id=document.pk)
    after = list(
        Chunk.objects.for_tenant(side.tenant)
        .filter(document=document)
        .values_list("text", flat=True)
    )
    assert sorted(after) == sorted(before)


def test_a_message_delivered_twice_runs_once(side):
    document = add(side, "guide.md", GUIDE)
    assert claim(document.pk) is not None
    assert document_ingest(document_id=document.pk) == "skipped"


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("secret.pdf", make_encrypted_pdf(["hidden"]), "encrypted_pdf"),
        ("scan.pdf", make_pdf([""]), "no_text"),
        ("deep.json", b"[" * 20000 + b"]" * 20000, "json_too_deep"),
    ],
)
def test_bad_documents_fail_with_a_readable_code(side, name, data, code):
    document = add(side, name, data)
    assert document_ingest(document_id=document.pk) == code
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED
    assert document.error_code == code and document.error_message
    assert not Chunk.objects.for_tenant(side.tenant).filter(document=document).exists()


def test_a_document_with_more_tokens_than_a_run_may_embed_fails_before_embedding(side, settings):
    settings.INGEST_MAX_TOKENS = 40
    document = add(side, "guide.md", GUIDE)
    assert document_ingest(document_id=document.pk) == "too_much_text"
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED
    assert document.error_code == "too_much_text"
    assert "more than the 40 one document may have" in document.error_message
    assert not Chunk.objects.for_tenant(side.tenant).filter(document=document).exists()


def test_pdf_pages_reach_the_chunks(side):
    document = add(side, "two.pdf", make_pdf(["Alpha page.", "Beta page."]))
    document_ingest(document_id=document.pk)
    pages = list(
        Chunk.objects.for_tenant(side.tenant)
        .filter(document=document)
        .values_list("page", flat=True)
    )
    assert sorted(pages) == [1, 2]


def crash_every_run(document: Document) -> None:
    """Each run claims it and dies (the lease is never released), then the reaper requeues it:
    as many times as a document may be tried."""
    for _ in range(settings.INGEST_MAX_ATTEMPTS):
        assert claim(document.pk) is not None
        Document.all_tenants.filter(pk=document.pk).update(
            processing_started_at=timezone.now()
            - dt.timedelta(seconds=settings.INGEST_LEASE_SECONDS + 5)
        )
        reap()


def test_a_document_that_keeps_killing_its_worker_fails_as_worker_crash(side):
    document = add(side, "guide.md", GUIDE)
    crash_every_run(document)
    document.refresh_from_db()
    assert (document.status, document.error_code) == (DocumentStatus.FAILED, "worker_crash")
    assert document.error_message.startswith("Ingestion stopped without finishing 3 times;")


def found(side, query: str) -> list[str]:
    """The texts of the chunks a text search of the bot's datasets finds, best first."""
    hits = retrieve(search_space_for_bot(side.bot), query=query, top_k=5, mode="text").hits
    return [h.text for h in hits]


def test_a_document_being_reingested_is_found_as_it_was_until_the_new_run_stores_its_chunks(side):
    """A reingested document was not searched from the moment it was queued until its new run
    was ready (28 s for the README on make run: /v1/retrieve found none of it meanwhile). The
    version ingested before is searched until then; the new one replaces it whole."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from knowledge.intake import document_reingest

    document = add(side, "guide.md", GUIDE)
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    rotate = found(side, "rotate keys")
    assert any("ninety days" in text for text in rotate)
    document_reingest(tenant=side.tenant, actor=Actor.system("tests"), document=document)
    assert found(side, "rotate keys") == rotate  # queued
    assert claim(document.pk) is not None
    assert found(side, "rotate keys") == rotate  # processing
    Document.all_tenants.filter(pk=document.pk).update(status=DocumentStatus.QUEUED)
    # The stored original changes: the next run stores the new version in place of the old.
    default_storage.delete(document.file.name)
    default_storage.save(document.file.name, ContentFile(GUIDE.replace(b"ninety", b"thirty")))
    assert document_ingest(document_id=document.pk) == "ready"
    texts = list(Chunk.all_tenants.filter(document=document).values_list("text", flat=True))
    assert len(texts) == 3 and not any("ninety" in text for text in texts)
    assert any("thirty days" in text for text in found(side, "rotate keys"))


def test_a_reingest_that_fails_keeps_the_earlier_version_searchable(side):
    """A ready document reingested after its stored file went missing failed ``missing_file``
    and lost its earlier chunks: it was found by no search until a run succeeded. It keeps
    them: ``status`` and ``error`` tell the run, ``chunk_count``, ``token_count`` and
    ``ingested_at`` the version searched, and the BM25 statistics still count it."""
    from django.core.files.storage import default_storage

    from knowledge.intake import document_reingest
    from knowledge.tests.test_termstat import counted, stored

    document = add(side, "guide.md", GUIDE)
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    ready = (document.chunk_count, document.token_count, document.ingested_at)
    before = found(side, "rotate keys")
    default_storage.delete(document.file.name)
    document_reingest(tenant=side.tenant, actor=Actor.system("tests"), document=document)
    assert document_ingest(document_id=document.pk) == "missing_file"
    document.refresh_from_db()
    assert (document.status, document.error_code) == ("failed", "missing_file")
    assert (document.chunk_count, document.token_count, document.ingested_at) == ready
    assert Chunk.all_tenants.filter(document=document).count() == 3
    assert before and found(side, "rotate keys") == before
    assert "rotat" in stored(side.dataset.pk)
    assert stored(side.dataset.pk) == counted(side.dataset.pk)


def test_a_reingest_that_keeps_killing_its_worker_keeps_the_earlier_version(side):
    document = add(side, "guide.md", GUIDE)
    assert document_ingest(document_id=document.pk) == "ready"
    before = found(side, "rotate keys")
    Document.all_tenants.filter(pk=document.pk).update(status=DocumentStatus.QUEUED, attempts=0)
    crash_every_run(document)
    document.refresh_from_db()
    assert (document.status, document.error_code) == (DocumentStatus.FAILED, "worker_crash")
    assert document.chunk_count == 3 and document.token_count > 30
    assert before and found(side, "rotate keys") == before


@pytest.mark.parametrize(("attempts", "said"), [(1, "once"), (2, "2 times")])
def test_the_crash_message_counts_in_words(side, settings, attempts, said):
    settings.INGEST_MAX_ATTEMPTS = attempts
    document = add(side, "guide.md", GUIDE)
    for _ in range(attempts):
        claim(document.pk)
        Document.all_tenants.filter(pk=document.pk).update(
            processing_started_at=timezone.now()
            - dt.timedelta(seconds=settings.INGEST_LEASE_SECONDS + 5)
        )
        reap()
    document.refresh_from_db()
    assert document.error_message.startswith(f"Ingestion stopped without finishing {said};")


def test_reaper_requeues_a_document_whose_worker_died(side, django_capture_on_commit_callbacks):
    document = add(side, "guide.md", GUIDE)
    claim(document.pk)
    Document.all_tenants.filter(pk=document.pk).update(
        processing_started_at=timezone.now()
        - dt.timedelta(seconds=settings.INGEST_LEASE_SECONDS + 5)
    )
    assert reap()["requeued"] == 1
    document.refresh_from_db()
    assert document.status == DocumentStatus.QUEUED
    assert document_ingest(document_id=document.pk) == "ready"


def test_a_run_that_lost_its_claim_does_not_store(side):
    """The reaper gave this run's document to another run: the late run's chunks are dropped."""
    from knowledge.chunking import ChunkDraft
    from knowledge.ingestion import _store

    document = add(side, "guide.md", GUIDE)
    mine = claim(document.pk)
    assert mine is not None
    newer = mine.processing_started_at + dt.timedelta(seconds=1)
    Document.all_tenants.filter(pk=document.pk).update(processing_started_at=newer)
    draft = ChunkDraft("late text", None, [], 0, 9, 2)
    vector = [1.0] + [0.0] * (settings.EMBEDDING_DIMENSIONS - 1)
    assert _store(mine, mine.processing_started_at, [draft], [vector], [False], "m") is False
    assert not Chunk.objects.for_tenant(side.tenant).filter(document=document).exists()


def test_json_with_lone_surrogates_is_stored(side):
    document = add(side, "odd.json", b'["\\ud800 lone", "\\udd1e\\ud834 inverted"]')
    assert document_ingest(document_id=document.pk) == "ready"
    texts = list(
        Chunk.objects.for_tenant(side.tenant)
        .filter(document=document)
        .values_list("text", flat=True)
    )
    assert "\ufffd lone" in texts[0]


def test_documents_and_queries_meet_in_one_normal_form(side):
    """Invisible characters glued to words made lexemes like 'pass\u200bword', and an "é"
    written as e + U+0301 (NFD) was a different word from the precomposed one (NFC)."""
    hebrew = "\u05d4\u05e1\u05e4\u05e8\u05d9\u05d9\u05d4"
    text = (
        "Reset your pass\u200bword from the account page. "
        "The caf\u00e9 opens at nine. "  # NFC
        "Cre\u0300me bru\u0302le\u0301e is served on Sundays. "  # NFD
        f"The {hebrew}\u200f closes at six."  # Hebrew, then a right-to-left mark
    )
    document = add(side, "notes.txt", text.encode())
    assert document_ingest(document_id=document.pk) == "ready"
    (stored,) = Chunk.objects.for_tenant(side.tenant).filter(document=document)
    assert stored.text == (
        "Reset your password from the account page. The caf\u00e9 opens at nine. "
        f"Cr\u00e8me br\u00fbl\u00e9e is served on Sundays. The {hebrew} closes at six."
    )
    space = search_space_for_bot(side.bot)

    def finds(query: str) -> bool:
        hits = retrieve(space, query=query, top_k=5, mode="text").hits
        return document.pk in {h.document_id for h in hits}

    assert finds("password") and finds("pass\u200bword")
    assert finds("cafe\u0301")  # an NFD query, an NFC document
    assert finds("cr\u00e8me br\u00fbl\u00e9e")  # an NFC query, an NFD document
    assert finds(hebrew)
    assert not finds("pass")


def test_an_unreadable_file_fails_readably_and_logs_what_the_parser_raised(side, caplog):
    document = add(side, "broken.pdf", b"%PDF-1.4\nnot a PDF after all\n")
    with caplog.at_level(logging.WARNING, logger="knowledge.ingestion"):
        assert document_ingest(document_id=document.pk) == "corrupt_file"
    document.refresh_from_db()
    assert document.error_message == (
        "The PDF cannot be read; the file is damaged or not a valid PDF."
    )
    [line] = [r.msg for r in caplog.records
              if isinstance(r.msg, dict) and r.msg.get("event") == "document_failed"]  # fmt: skip
    assert (line["code"], line["detail"]) == ("corrupt_file", "PdfminerException")


def test_a_run_takes_the_waiting_document_of_a_tenant_with_fewer_being_ingested():
    """One queue for every tenant: a tenant that queued a thousand documents held up another's
    one until all of them were done (a security audit, 2026-12-06). A run now takes the queued
    document of the tenant with the fewest documents being ingested, its own on a tie; one
    task per document, so every document is still taken exactly once."""
    busy, waiting = build_tenant("busy"), build_tenant("waiting")
    running = add(busy, "running.md", GUIDE + b"\nRunning.\n")
    Document.all_tenants.filter(pk=running.pk).update(
        status=DocumentStatus.PROCESSING, processing_started_at=timezone.now()
    )
    first, second = add(busy, "a.md", GUIDE + b"\nA.\n"), add(busy, "b.md", GUIDE + b"\nB.\n")
    theirs = add(waiting, "theirs.md", GUIDE + b"\nTheirs.\n")  # queued last

    taken = claim(first.pk)  # the busy tenant's next task
    assert taken is not None and taken.pk == theirs.pk
    Document.all_tenants.filter(pk=theirs.pk).update(status=DocumentStatus.READY)
    # The waiting tenant's own task then takes what is left: the busy tenant's oldest.
    again = claim(theirs.pk)
    assert again is not None and again.pk == first.pk
    assert claim(second.pk).pk == second.pk
    assert claim(second.pk) is None  # nothing queued: the run has nothing to do


def deactivate(tenant, active: bool = False) -> None:
    tenant.is_active = active
    tenant.save(update_fields=["is_active", "updated_at"])


def test_a_deactivated_tenants_documents_wait_queued_until_it_is_active_again(side):
    """A deactivated tenant's queued documents were ingested (five minutes of a worker for one
    upload, seen against make run; a paid provider's embeddings too)."""
    document = add(side, "guide.md", GUIDE)
    deactivate(side.tenant)
    assert document_ingest(document_id=document.pk) == "skipped"
    document.refresh_from_db()
    assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 0)
    later = timezone.now() + dt.timedelta(seconds=settings.INGEST_LEASE_SECONDS + 5)
    assert reap(now=later)["reenqueued"] == 0  # no task a minute for it while it waits

    deactivate(side.tenant, active=True)
    assert reap(now=later)["reenqueued"] == 1
    assert document_ingest(document_id=document.pk) == "ready"


@pytest.mark.django_db(transaction=True)  # the provider's thread deactivates it: committed
def test_a_document_whose_tenant_is_deactivated_while_it_is_embedded_stops_and_waits(settings):
    """Deactivating a tenant did not stop a document being embedded: it was embedded to its end.
    It stops before the next window now, queued again, its attempt not counted."""

    side = build_tenant("deactivated-while-embedded")
    side.dataset.chunk_size, side.dataset.chunk_overlap = 32, 0
    side.dataset.save()
    paragraphs = [f"Paragraph {n} says something of its own about topic {n}." for n in range(600)]
    document = add(side, "long.md", "\n\n".join(paragraphs).encode())

    result, windows = ingest_interrupted(
        settings, document.pk, lambda: deactivate(Tenant.objects.get(pk=side.tenant.pk))
    )
    assert result == "paused"
    assert windows == 1  # of two: more than EMBED_WINDOW chunks
    document.refresh_from_db()
    assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 0)
    assert not Chunk.objects.for_tenant(side.tenant).filter(document=document).exists()


def hold_on_another_host(redis_client, document: Document, beat_age: float) -> None:
    """``document``, claimed here, as if a worker on another host held it, whose last heartbeat
    was ``beat_age`` seconds ago."""
    import json
    import time

    from chatbot_site.celery import HEARTBEAT_KEY
    from knowledge import lease

    claimed_at = Document.all_tenants.get(pk=document.pk).processing_started_at
    assert claimed_at is not None
    holder = {"claim": claimed_at.astimezone(dt.UTC).isoformat(), "host": "another-host",
              "pid": 1, "start": "1", "worker": "another-host:1"}  # fmt: skip
    redis_client.set(lease.KEY.format(document.pk), json.dumps(holder))
    redis_client.zadd(HEARTBEAT_KEY, {"another-host:1": time.time() - beat_age})


@pytest.fixture
def another_host(redis_client):
    from chatbot_site.celery import HEARTBEAT_KEY

    yield
    redis_client.zrem(HEARTBEAT_KEY, "another-host:1")


@pytest.mark.parametrize(("beat_age", "requeued"), [(3600.0, 1), (0.0, 0)])
def test_reaper_requeues_a_document_whose_worker_on_another_host_stopped_beating(
    side, redis_client, another_host, beat_age, requeued
):
    """A holder on another host is dead when its worker's heartbeat is older than
    ``WORKER_HEARTBEAT_MAX_AGE_SECONDS``: the reaper queues its document again within its lease
    (it waited the whole lease); a holder still beating keeps it (a slow run)."""
    document = add(side, "guide.md", GUIDE)
    assert claim(document.pk) is not None
    hold_on_another_host(redis_client, document, beat_age)
    assert reap()["requeued"] == requeued
    document.refresh_from_db()
    assert document.status == (DocumentStatus.QUEUED if requeued else DocumentStatus.PROCESSING)


@pytest.mark.parametrize(("beat_age", "taken"), [(3600.0, True), (0.0, False)])
def test_a_redelivered_task_takes_over_a_document_whose_holder_is_dead(
    side, redis_client, another_host, beat_age, taken
):
    document = add(side, "guide.md", GUIDE)
    first = claim(document.pk)
    assert first is not None
    hold_on_another_host(redis_client, document, beat_age)
    again = claim(document.pk)  # the same task, redelivered
    assert (again is not None) == taken
    document.refresh_from_db()
    assert document.status == DocumentStatus.PROCESSING
    assert document.attempts == (2 if taken else 1)
    if taken:
        assert document.processing_started_at > first.processing_started_at
        assert document_ingest(document_id=document.pk) == "skipped"  # held by the new run

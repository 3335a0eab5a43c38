"""Documents remember the pipeline version that made their chunks, and `manage.py reingest_stale`
remakes those an older one made: through the reingest service, a batch at a time, the older
chunks searched until the new ones are stored."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from knowledge.ingestion import PIPELINE_CHANGES, PIPELINE_VERSION, document_ingest
from knowledge.intake import document_add_upload, documents_add_records
from knowledge.models import Chunk, Document, DocumentStatus
from knowledge.parsers import HTML, PDF
from knowledge.stale import documents_stale
from tenants.models import AuditLog
from tenants.services import Actor
from tests.processes import celery_worker, child_env
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def ingested(side, name: str, text: str) -> Document:
    upload = SimpleUploadedFile(name, text.encode())
    document = document_add_upload(tenant=side.tenant, actor=Actor.system("tests"),
                                   dataset=side.dataset, upload=upload).document  # fmt: skip
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    return document


def made_by_an_older_release(*documents: Document) -> None:
    """As the migration leaves the documents ingested before versions were recorded."""
    Document.all_tenants.filter(pk__in=[d.pk for d in documents]).update(pipeline_version=0)


def reingest_stale(*args: str) -> dict:
    out = io.StringIO()
    call_command("reingest_stale", *args, stdout=out)
    return json.loads(out.getvalue())


def status(document: Document) -> str:
    return Document.all_tenants.values_list("status", flat=True).get(pk=document.pk)


def test_a_run_records_the_pipeline_version_that_made_the_chunks_and_the_api_shows_it():
    side = build_tenant("acme")
    assert side.document.pipeline_version == 0  # what the migration gives existing rows
    document = ingested(side, "guide.md", "# Guide\n\nRefunds take five days.")
    assert PIPELINE_VERSION >= 1
    assert document.pipeline_version == PIPELINE_VERSION
    body = side.client().get(f"/v1/documents/{document.pk}").json()
    assert body["pipeline_version"] == PIPELINE_VERSION


def test_stale_documents_are_reingested_a_batch_at_a_time_and_searched_meanwhile(
    django_capture_on_commit_callbacks,
):
    side = build_tenant("acme")
    docs = [ingested(side, f"{n}.md", f"# Doc {n}\n\nBody number {n}.") for n in range(3)]
    current = ingested(side, "new.md", "# New\n\nMade by this release.")
    made_by_an_older_release(*docs)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        dry = reingest_stale("--dry-run", "--batch", "2")
    assert (dry["stale"], dry["queued"], dry["remaining"], dry["dry_run"]) == (3, 2, 1, True)
    assert callbacks == [] and {status(d) for d in docs} == {"ready"}

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = reingest_stale("--batch", "2")
    assert (first["stale"], first["queued"], first["remaining"]) == (3, 2, 1)
    assert first["pipeline_version"] == PIPELINE_VERSION and first["missing_file"] == 0
    assert len(callbacks) == 2  # one ingestion task each, after commit
    queued = [d for d in docs if status(d) == "queued"]
    assert len(queued) == 2 and status(current) == "ready"
    # Queued, their older chunks are still what is searched.
    assert Chunk.all_tenants.filter(document__in=queued).count() == 2
    reingest = AuditLog.objects.for_tenant(side.tenant).filter(action="document.reingest")
    assert {e.actor_label for e in reingest} == {"manage.py reingest_stale"}

    # The queue is full (two in flight, batch 2): nothing more until they are done.
    assert reingest_stale("--batch", "2")["queued"] == 0
    for document in queued:
        assert document_ingest(document_id=document.pk) == "ready"
    second = reingest_stale("--batch", "2")
    assert (second["stale"], second["queued"], second["remaining"]) == (1, 1, 0)
    [last] = [d for d in docs if d not in queued]
    assert document_ingest(document_id=last.pk) == "ready"
    assert set(Document.all_tenants.values_list("pipeline_version", flat=True)) == {
        0,  # build_tenant's document, which has no chunks: nothing to remake
        PIPELINE_VERSION,
    }
    assert reingest_stale()["stale"] == 0


def test_uploads_waiting_in_the_queue_count_against_the_batch():
    side = build_tenant("acme")
    docs = [ingested(side, f"{n}.md", f"# Doc {n}\n\nBody number {n}.") for n in range(2)]
    made_by_an_older_release(*docs)
    document_add_upload(tenant=side.tenant, actor=Actor.system("tests"), dataset=side.dataset,
                        upload=SimpleUploadedFile("fresh.md", b"# Fresh\n\nJust sent."))  # fmt: skip
    report = reingest_stale("--batch", "2")
    assert (report["in_flight"], report["queued"], report["remaining"]) == (1, 1, 1)


def test_only_the_tenant_named_and_at_most_the_limit_are_queued():
    acme, other = build_tenant("acme"), build_tenant("other")
    mine = [ingested(acme, f"{n}.md", f"# Doc {n}\n\nBody number {n}.") for n in range(3)]
    theirs = ingested(other, "theirs.md", "# Theirs\n\nAnother tenant's text.")
    made_by_an_older_release(*mine, theirs)
    report = reingest_stale("--tenant", "acme", "--limit", "2")
    assert (report["stale"], report["queued"], report["remaining"]) == (3, 2, 1)
    assert status(theirs) == "ready"
    with pytest.raises(CommandError, match="Tenant 'nobody' not found"):
        reingest_stale("--tenant", "nobody")


def test_what_cannot_be_reingested_is_named_not_queued():
    """An upload's or a record's original is kept for a reingest; when the stored file is gone
    the run would fail missing_file and mark a searchable document failed."""
    side = build_tenant("acme")
    upload = ingested(side, "a.md", "# A\n\nKept.")
    lost = ingested(side, "b.md", "# B\n\nIts file is lost.")
    [record] = documents_add_records(tenant=side.tenant, actor=Actor.system("tests"),
                                     dataset=side.dataset,
                                     records=[{"title": "R", "text": "A record's text."}])  # fmt: skip
    assert document_ingest(document_id=record.document.pk) == "ready"
    made_by_an_older_release(upload, lost, record.document)
    default_storage.delete(lost.file.name)
    report = reingest_stale()
    assert (report["queued"], report["missing_file"], report["remaining"]) == (2, 1, 0)
    assert report["missing_file_ids"] == [str(lost.pk)]
    assert (status(upload), status(record.document), status(lost)) == ("queued", "queued", "ready")
    assert document_ingest(document_id=record.document.pk) == "ready"
    assert Chunk.all_tenants.get(document_id=record.document.pk).text == "R\n\nA record's text."


def test_failed_documents_are_counted_and_queued_only_when_asked():
    side = build_tenant("acme")
    failed = ingested(side, "a.md", "# A\n\nSearched, though its last reingest failed.")
    made_by_an_older_release(failed)
    Document.all_tenants.filter(pk=failed.pk).update(
        status=DocumentStatus.FAILED, error_code="url_unreachable", error_message="Gone."
    )
    report = reingest_stale()
    assert (report["stale"], report["queued"], report["failed_not_queued"]) == (0, 0, 1)
    assert reingest_stale("--include-failed")["queued"] == 1
    assert status(failed) == "queued"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_wait_reingests_every_stale_document_through_a_real_worker(tmp_path):
    side = build_tenant("acme")
    docs = [
        ingested(side, f"{n}.md", f"# Doc {n}\n\nBody number {n}, in an older chunking.")
        for n in range(3)
    ]
    made_by_an_older_release(*docs)
    log = tmp_path / "worker.log"
    with celery_worker(child_env(), log):
        report = reingest_stale("--wait", "--batch", "1", "--poll", "0.2", "--timeout", "300")
    assert report["outcomes"] == {"ready": 3}, log.read_text()[-4000:]
    assert (report["stale"], report["queued"], report["remaining"]) == (3, 3, 0)
    assert {
        d.pipeline_version for d in Document.all_tenants.filter(pk__in=[d.pk for d in docs])
    } == {PIPELINE_VERSION}


def test_documents_embedded_by_another_model_are_stale_too(settings):
    """After EMBEDDING_MODEL changes, the chunks embedded by the old model cannot be compared
    with a question's vector; reingest_stale did not see them (same pipeline version)."""
    side = build_tenant("acme")
    current = ingested(side, "current.md", "# Guide\n\nRefunds take five days.")
    older = ingested(side, "older.md", "# Plans\n\nPlans renew every year.")
    Document.all_tenants.filter(pk=older.pk).update(embedding_model="text-embedding-ada-002")
    report = reingest_stale("--dry-run")
    assert (report["stale"], report["queued"]) == (1, 1)
    assert status(current) == status(older) == "ready"
    reingest_stale()
    assert (status(current), status(older)) == ("ready", "queued")


def test_only_documents_of_a_type_a_later_version_changed_are_stale():
    """Version 2 changed how PDFs are read only: a Markdown file made by version 1 is what
    version 2 makes of it, and reingesting every document (re-embedding it, paid for with a
    provider) for it was waste; a PDF made by version 1, and anything made before version 1
    (every type changed), is stale."""
    side = build_tenant("acme")
    markdown = ingested(side, "guide.md", "# Guide\n\nRefunds take five days.")
    pdf = ingested(side, "plans.md", "# Plans\n\nPlans renew every year.")
    unversioned = ingested(side, "older.md", "# Older\n\nInvoices are monthly.")
    Document.all_tenants.filter(pk__in=[markdown.pk, pdf.pk]).update(pipeline_version=1)
    Document.all_tenants.filter(pk=pdf.pk).update(content_type=PDF)  # as a PDF's row reads
    made_by_an_older_release(unversioned)
    assert PIPELINE_CHANGES[2] == {PDF}
    stale = set(documents_stale().values_list("pk", flat=True))
    assert stale == {pdf.pk, unversioned.pk}


def test_html_documents_made_before_boilerplate_was_dropped_are_stale_and_no_others():
    """Version 7 reads HTML pages without their plain-markup menus and link lists: an HTML page
    made by version 6 is stale, a Markdown file made by version 6 is not; version 8 (words
    drawn without spaces) re-reads PDFs only: a PDF made by version 7 is stale, an HTML page
    made by version 7 is not."""
    side = build_tenant("acme")
    page = ingested(
        side, "returns.html", "<html><body><p>Refunds take five days.</p></body></html>"
    )
    markdown = ingested(side, "guide.md", "# Guide\n\nRefunds take five days.")
    pdf = ingested(side, "plans.md", "# Plans\n\nPlans renew every year.")
    assert page.content_type == HTML
    Document.all_tenants.filter(pk__in=[page.pk, markdown.pk]).update(pipeline_version=6)
    # as a PDF's row reads
    Document.all_tenants.filter(pk=pdf.pk).update(content_type=PDF, pipeline_version=8)
    stale = set(documents_stale().values_list("pk", flat=True))
    assert stale == {page.pk}
    Document.all_tenants.filter(pk__in=[page.pk, pdf.pk]).update(pipeline_version=7)
    stale = set(documents_stale().values_list("pk", flat=True))
    assert stale == {pdf.pk}

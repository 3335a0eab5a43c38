"""The admin's dataset upload, ingestion monitor and actions: same services as the API,
audited with the staff user as actor."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from knowledge.models import Chunk, Dataset, Document, DocumentStatus
from knowledge.tests.factories import ChunkFactory, DatasetFactory, DocumentFactory
from knowledge.tests.fixtures import make_pdf
from tenants.models import AuditLog
from tenants.tests.factories import TenantFactory
from tests.plans import explain, rows_read
from tests.staff import PASSWORD, code, make_staff, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return TenantFactory(slug="acme")


@pytest.fixture
def dataset(tenant):
    return DatasetFactory(tenant=tenant, name="Handbook")


@pytest.fixture
def staff(tenant):
    return staff_client(tenant, "alice")


def staff_audit(tenant, action: str) -> list[AuditLog]:
    entries = AuditLog.objects.for_tenant(tenant).filter(action=action)
    return [e for e in entries if e.actor_type == "staff" and e.actor_label == "alice"]


def test_upload_queues_every_file_with_its_tags_after_commit(
    staff, tenant, dataset, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile("guide.md", b"# Guide\n\nRefunds take 14 days."),
        SimpleUploadedFile("report.pdf", make_pdf(["Revenue grew."])),
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            f"/admin/knowledge/dataset/{dataset.pk}/upload/",
            {"documents": files, "tags": "handbook, 2026, handbook"},
        )

    assert response.status_code == 302
    assert response["Location"].endswith(f"?dataset__id__exact={dataset.pk}")
    documents = Document.objects.for_tenant(tenant).filter(dataset=dataset)
    assert sorted(d.source for d in documents) == ["guide.md", "report.pdf"]
    assert {d.content_type for d in documents} == {"text/markdown", "application/pdf"}
    assert all(d.status == DocumentStatus.QUEUED and d.file for d in documents)
    assert all(d.tags == ["handbook", "2026"] for d in documents)
    assert len(callbacks) == 2  # one ingestion task each, enqueued only after the commit
    assert len(staff_audit(tenant, "document.create")) == 2


def test_a_bad_file_or_url_is_reported_and_the_others_still_queue(staff, tenant, dataset):
    response = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/upload/",
        {
            "documents": [
                SimpleUploadedFile("tool.exe", b"MZ\x90\x00" + bytes(range(256)) * 8),
                SimpleUploadedFile("notes.txt", b"Plain notes about refunds."),
            ],
            "urls": "http://127.0.0.1/admin\nftp://example.com/file",
        },
        follow=True,
    )

    text = response.content.decode()
    assert "Queued 1 document(s)" in text
    assert "Not queued: tool.exe — Unsupported file type" in text
    assert "Not queued: http://127.0.0.1/admin — The URL cannot be fetched. url_not_allowed" in text
    assert "Not queued: ftp://example.com/file — The URL cannot be fetched." in text
    assert list(Document.objects.for_tenant(tenant).values_list("source", flat=True)) == [
        "notes.txt"
    ]


def test_an_empty_file_is_named_and_the_others_still_queue(staff, tenant, dataset):
    """An empty file among several failed the whole form with "The submitted file is empty."
    (which of six?) and queued none of the others (seen in Chromium)."""
    response = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/upload/",
        {
            "documents": [
                SimpleUploadedFile("notes.txt", b"Plain notes about refunds."),
                SimpleUploadedFile("empty.md", b""),
                SimpleUploadedFile("guide.md", b"# Guide\n\nRefunds take 14 days."),
            ]
        },
        follow=True,
    )

    text = response.content.decode()
    assert "Queued 2 document(s)" in text
    assert "Not queued: empty.md — The submitted file is empty." in text
    sources = Document.objects.for_tenant(tenant).values_list("source", flat=True)
    assert sorted(sources) == ["guide.md", "notes.txt"]


def test_a_url_the_api_would_refuse_is_listed_and_the_others_still_queue(staff, tenant, dataset):
    """A URL longer than the column was a 500 (DataError) after the URLs before it were saved
    and queued."""
    too_long = "http://93.184.216.34/" + "x" * 2048
    urls = ["http://93.184.216.34/first", too_long, "not a url", "http://93.184.216.34/last"]
    response = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/upload/", {"urls": "\n".join(urls)}, follow=True
    )

    assert response.status_code == 200
    text = response.content.decode()
    assert "Queued 2 document(s)" in text
    assert "Not queued: http://93.184.216.34/xxx" in text
    assert "Ensure this field has no more than 2048 characters." in text
    assert too_long not in text
    assert "Not queued: not a url — Enter a valid URL." in text
    sources = Document.objects.for_tenant(tenant).values_list("source", flat=True)
    assert sorted(sources) == ["http://93.184.216.34/first", "http://93.184.216.34/last"]


def test_an_item_that_fails_unexpectedly_is_listed_and_the_others_still_queue(
    staff, tenant, dataset
):
    from django.db import connection

    # A failure the checks before it cannot foresee, from the real database: a constraint that
    # refuses one of the rows (gone with the test's transaction).
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE knowledge_document ADD CONSTRAINT test_refuses_broken"
            " CHECK (source NOT LIKE '%%/broken')"
        )
    urls = [
        "http://93.184.216.34/first",
        "http://93.184.216.34/broken",
        "http://93.184.216.34/last",
    ]
    response = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/upload/", {"urls": "\n".join(urls)}, follow=True
    )

    assert response.status_code == 200
    text = response.content.decode()
    assert "Queued 2 document(s)" in text
    assert "Not queued: http://93.184.216.34/broken — It could not be added" in text
    assert Document.objects.for_tenant(tenant).count() == 2


def test_an_uploaded_file_is_stored_as_utf8_from_the_charset_its_part_declares(
    staff, tenant, dataset
):
    text = "Оплата по счёту в течение 14 дней."  # a guess reads its KOI8-R as Shift_JIS
    upload = SimpleUploadedFile(
        "terms.txt", text.encode("koi8-r"), content_type="text/plain; charset=koi8-r"
    )
    staff.post(f"/admin/knowledge/dataset/{dataset.pk}/upload/", {"documents": [upload]})
    document = Document.objects.for_tenant(tenant).get(dataset=dataset)
    assert document.file.read() == text.encode()
    assert document.byte_size == len(text.encode())


def test_uploading_the_same_file_again_is_the_existing_document(staff, tenant, dataset):
    url = f"/admin/knowledge/dataset/{dataset.pk}/upload/"
    staff.post(url, {"documents": [SimpleUploadedFile("a.md", b"# Same")]})
    again = staff.post(url, {"documents": [SimpleUploadedFile("b.md", b"# Same")]}, follow=True)
    assert "Already in the dataset: b.md" in again.content.decode()
    assert Document.objects.for_tenant(tenant).count() == 1


def test_an_empty_upload_shows_the_form_again_with_the_reason(staff, dataset):
    response = staff.post(f"/admin/knowledge/dataset/{dataset.pk}/upload/", {"tags": "x"})
    assert response.status_code == 200
    assert "Choose at least one file or give a URL." in response.content.decode()


def test_an_upload_over_the_size_limit_is_refused_with_a_message(staff, tenant, dataset, settings):
    settings.INGEST_MAX_UPLOAD_BYTES = 1024
    response = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/upload/",
        {"documents": [SimpleUploadedFile("big.md", b"# Big\n" + b"x" * 200_000)]},
        follow=True,
    )
    assert "Uploads are limited to" in response.content.decode()
    assert not Document.objects.for_tenant(tenant).exists()


def csrf_token(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_the_upload_form_checks_csrf_and_refuses_an_oversize_body_with_a_message(
    tenant, dataset, settings
):
    _, device = make_staff(tenant, "alice")
    client = Client(enforce_csrf_checks=True)
    token = csrf_token(client, "/admin/login/")
    signed_in = client.post(
        "/admin/login/",
        {"username": "alice", "password": PASSWORD, "otp_token": code(device),
         "csrfmiddlewaretoken": token},
    )  # fmt: skip
    assert signed_in.status_code == 302
    url = f"/admin/knowledge/dataset/{dataset.pk}/upload/"
    small = SimpleUploadedFile("small.md", b"# Small")
    assert client.post(url, {"documents": [small]}).status_code == 403  # no token

    settings.INGEST_MAX_UPLOAD_BYTES = 1024
    big = SimpleUploadedFile("big.md", b"# Big\n" + b"x" * 200_000)
    response = client.post(
        url, {"documents": [big], "csrfmiddlewaretoken": csrf_token(client, url)}, follow=True
    )
    assert response.status_code == 200
    assert "Uploads are limited to" in response.content.decode()
    assert not Document.objects.for_tenant(tenant).exists()


def test_the_monitor_counts_statuses_and_refreshes_only_while_work_is_in_progress(
    staff, tenant, dataset
):
    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.READY)
    DocumentFactory(
        tenant=tenant,
        dataset=dataset,
        status=DocumentStatus.FAILED,
        error_code="encrypted_pdf",
        error_message="The PDF is encrypted.",
    )
    queued = DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.QUEUED)
    url = f"/admin/knowledge/document/?dataset__id__exact={dataset.pk}"

    busy = staff.get(url).content.decode()
    assert re.search(r'id="count-queued">queued: 1<', busy)
    assert re.search(r'id="count-ready">ready: 1<', busy)
    assert re.search(r'id="count-failed">failed: 1<', busy)
    assert "encrypted_pdf" in busy and "The PDF is encrypted." in busy
    assert "window.location.reload()" in busy
    assert f"/admin/knowledge/dataset/{dataset.pk}/upload/" in busy

    Document.objects.for_tenant(tenant).filter(pk=queued.pk).update(status=DocumentStatus.READY)
    settled = staff.get(url).content.decode()
    assert re.search(r'id="count-ready">ready: 2<', settled)
    assert "window.location.reload()" not in settled


def test_the_dataset_list_shows_counts_per_status(staff, tenant, dataset):
    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.READY, chunk_count=7)
    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.PROCESSING)
    page = staff.get("/admin/knowledge/dataset/").content.decode()
    assert "1 ready" in page and "1 processing" in page
    assert '<td class="field-chunks">7</td>' in page


def test_reingest_action_requeues_finished_documents_and_is_audited(
    staff, tenant, dataset, django_capture_on_commit_callbacks
):
    failed = DocumentFactory(
        tenant=tenant, dataset=dataset, status=DocumentStatus.FAILED, error_code="no_text"
    )
    busy = DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.PROCESSING)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            "/admin/knowledge/document/",
            {"action": "reingest", "_selected_action": [str(failed.pk), str(busy.pk)]},
            follow=True,
        )

    text = response.content.decode()
    assert "Queued 1 document(s) for ingestion again." in text
    assert "1 document(s) were already queued or processing." in text
    failed.refresh_from_db()
    assert failed.status == DocumentStatus.QUEUED and failed.error_code is None
    assert len(callbacks) == 1
    assert [e.target_id for e in staff_audit(tenant, "document.reingest")] == [str(failed.pk)]


def test_delete_action_removes_documents_through_the_service_and_is_audited(staff, tenant, dataset):
    doomed = DocumentFactory(tenant=tenant, dataset=dataset)
    kept = DocumentFactory(tenant=tenant, dataset=dataset)
    response = staff.post(
        "/admin/knowledge/document/",
        {"action": "delete_selected", "_selected_action": [str(doomed.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(Document.objects.for_tenant(tenant).values_list("pk", flat=True)) == [kept.pk]
    assert [e.target_id for e in staff_audit(tenant, "document.delete")] == [str(doomed.pk)]


def test_a_dataset_page_lists_its_own_newest_documents(staff, tenant, dataset):
    own = DocumentFactory(tenant=tenant, dataset=dataset, title="Own handbook")
    DocumentFactory(tenant=tenant, title="Elsewhere")  # newer, in another dataset
    page = staff.get(f"/admin/knowledge/dataset/{dataset.pk}/change/").content.decode()
    assert "Own handbook" in page and f"/admin/knowledge/document/{own.pk}/change/" in page
    assert "Elsewhere" not in page


def dataset_form(tenant, **overrides) -> dict:
    form = {"name": "Added in the admin", "tenant": str(tenant.pk), "language": "english",
            "chunk_size": 512, "chunk_overlap": 64, "tags": "[]",
            "documents-TOTAL_FORMS": 0, "documents-INITIAL_FORMS": 0,
            "documents-MIN_NUM_FORMS": 0, "documents-MAX_NUM_FORMS": 0}  # fmt: skip
    return {**form, **overrides}


def test_the_add_dataset_page_opens_and_adds_one(staff, tenant):
    """Its documents inline sliced a queryset and then filtered it: a 500 for everyone."""
    response = staff.get("/admin/knowledge/dataset/add/")
    assert response.status_code == 200, response.content[:300]
    saved = staff.post("/admin/knowledge/dataset/add/", dataset_form(tenant))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Dataset.objects.for_tenant(tenant).filter(name="Added in the admin").exists()


def test_a_language_postgresql_does_not_have_is_a_form_error(staff, tenant, dataset):
    """The database refused it: a 500, ProgrammingError "text search configuration ... does
    not exist". The admin offers the API's languages."""
    pages = {"/admin/knowledge/dataset/add/": "Added in the admin",
             f"/admin/knowledge/dataset/{dataset.pk}/change/": "Handbook"}  # fmt: skip
    for url, name in pages.items():
        response = staff.post(url, dataset_form(tenant, name=name, language="klingon"))
        assert response.status_code == 200, (url, response.content[:300])
        assert list(response.context["adminform"].form.errors) == ["language"], url
    assert [(d.name, d.language) for d in Dataset.objects.for_tenant(tenant)] == [
        ("Handbook", "english")
    ]
    french = staff.post(
        f"/admin/knowledge/dataset/{dataset.pk}/change/",
        dataset_form(tenant, name="Handbook", language="french"),
    )
    assert french.status_code == 302
    dataset.refresh_from_db()
    assert dataset.language == "french"


def test_deleting_a_dataset_confirms_with_a_summary_and_goes_through_the_service(
    staff, tenant, dataset
):
    chunks = [
        ChunkFactory(tenant=tenant, document=DocumentFactory(tenant=tenant, dataset=dataset))
        for _ in range(3)
    ]
    url = f"/admin/knowledge/dataset/{dataset.pk}/delete/"
    confirm = staff.get(url).content.decode()
    assert "Handbook" in confirm
    assert "<li>Documents: 3</li>" in confirm and "<li>Chunks: 3</li>" in confirm
    assert not any(str(c.pk) in confirm or str(c.document_id) in confirm for c in chunks)

    assert staff.post(url, {"post": "yes"}).status_code == 302
    assert not Document.objects.for_tenant(tenant).exists()
    assert not Chunk.objects.for_tenant(tenant).exists()
    assert [e.target_id for e in staff_audit(tenant, "dataset.delete")] == [str(dataset.pk)]


def test_the_delete_confirmation_links_the_objects_instead_of_showing_escaped_html(
    staff, tenant, dataset
):
    document = DocumentFactory(tenant=tenant, dataset=dataset, title="Refund policy")
    pages = {
        f"/admin/knowledge/dataset/{dataset.pk}/change/": staff.get(
            f"/admin/knowledge/dataset/{dataset.pk}/delete/"
        ),
        f"/admin/knowledge/document/{document.pk}/change/": staff.post(
            "/admin/knowledge/document/",
            {"action": "delete_selected", "_selected_action": [str(document.pk)]},
        ),
    }
    for link, page in pages.items():
        text = page.content.decode()
        assert f'<a href="{link}">' in text, link
        assert "&lt;a href" not in text, link


@pytest.mark.parametrize("facets", ["", "&_facets=True"])
def test_the_language_filter_lists_the_datasets_of_that_language(staff, tenant, dataset, facets):
    """language is a regconfig column: compared with a bare string it was read as an oid (500)."""
    DatasetFactory(tenant=tenant, name="Manuel", language="french")
    for language, names in [("english", ["Handbook"]), ("french", ["Manuel"]), ("klingon", [])]:
        response = staff.get(f"/admin/knowledge/dataset/?language={language}{facets}")
        assert response.status_code == 200, response.content[:300]
        assert [d.name for d in response.context["cl"].result_list] == names


def test_the_chunk_list_reads_a_page_of_chunks_not_every_chunk(tenant, dataset):
    """It sorted by each chunk's document (newest first): a join and a sort of every chunk in
    scope for each page, 1 s for 200,000 chunks."""
    documents = [DocumentFactory(tenant=tenant, dataset=dataset) for _ in range(10)]
    Chunk.all_tenants.bulk_create(
        Chunk(tenant=tenant, dataset=dataset, document=document, ordinal=n, text="Passage.")
        for document in documents
        for n in range(30)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    superuser = staff_client(tenant, "root", superuser=True)
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get("/admin/knowledge/chunk/")
    assert response.status_code == 200
    page = response.context["cl"].result_list
    assert len(page) == 100
    # A document's chunks in order, one document after the other.
    assert [(c.document_id, c.ordinal) for c in page] == sorted(
        (c.document_id, c.ordinal) for c in page
    )
    (sql,) = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "knowledge_chunk"."id"') and "LIMIT 100" in q["sql"]
    ]
    # The page and its documents, not all 300 (126 seen in a full run: the plan varies with
    # what other tests left in the tables; a sort of every chunk reads 300 and more).
    assert rows_read(explain(sql)) < 200


def test_a_chunk_list_page_past_the_deepest_served_is_the_deepest_and_reads_no_further(
    tenant, dataset, settings
):
    """Page 2,000 of 200,000 chunks took 3.2 s: its OFFSET read and sorted every chunk before
    it. Pages stop at ADMIN_LIST_MAX_ROWS (a deeper one is the last of them); the count is
    exact."""
    document = DocumentFactory(tenant=tenant, dataset=dataset)
    Chunk.all_tenants.bulk_create(
        Chunk(tenant=tenant, dataset=dataset, document=document, ordinal=n, text="Passage.")
        for n in range(250)
    )
    settings.ADMIN_LIST_MAX_ROWS = 200  # two pages of 100
    superuser = staff_client(tenant, "root", superuser=True)
    url = f"/admin/knowledge/chunk/?document__id__exact={document.pk}"

    with CaptureQueriesContext(connection) as queries:
        response = superuser.get(f"{url}&p=3")

    assert response.status_code == 200
    changelist = response.context["cl"]
    assert (changelist.result_count, changelist.paginator.num_pages) == (250, 2)
    assert [c.ordinal for c in changelist.result_list] == list(range(100, 200))
    pages = [q["sql"] for q in queries.captured_queries if "LIMIT 100" in q["sql"]]
    assert pages and all("OFFSET 200" not in sql for sql in pages)
    assert f"{url}&amp;p=3" not in response.content.decode()  # no link to a page not served


def test_the_document_list_reads_no_distinct_values_and_no_ready_documents(staff, tenant, dataset):
    """Its filters' choices were each a SELECT DISTINCT over every document in scope (tags,
    content types, pipeline versions) and the monitor's counts a GROUP BY over all of them:
    450-650 ms a page at 200,000 documents. Content types and versions are known without a
    query, tags come from the newest documents, and the ready count is the list's count less
    the others (read off the status index)."""
    from knowledge.ingestion import PIPELINE_VERSION
    from knowledge.parsers import PDF, SUPPORTED

    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.READY, tags=["faq"],
                    content_type=PDF, pipeline_version=PIPELINE_VERSION)  # fmt: skip
    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.READY, tags=["hr"])
    DocumentFactory(tenant=tenant, dataset=dataset, status=DocumentStatus.FAILED, error_code="x")
    other = DatasetFactory(tenant=TenantFactory(slug="other"))
    DocumentFactory(tenant=other.tenant, dataset=other, tags=["secret-tag"])

    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/admin/knowledge/document/")
    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if sql.startswith("SELECT DISTINCT")], statements
    grouped = [sql for sql in statements if "GROUP BY" in sql]
    assert grouped and all("'ready'" not in sql for sql in grouped), grouped
    assert response.context["status_counts"] == {
        "queued": 0, "processing": 0, "ready": 2, "failed": 1}  # fmt: skip
    choices = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert choices["tag"] == ["All", "faq", "hr"]  # this tenant's only
    assert choices["content type"][1 : len(SUPPORTED) + 1] == list(SUPPORTED)
    assert choices["pipeline version"][1:] == [str(v) for v in range(PIPELINE_VERSION, -1, -1)]

    # The filters filter, under the parameters of Django's own (links and bookmarks work).
    for query, expected in ((f"content_type__exact={PDF}", 1), ("pipeline_version__exact=0", 2),
                            ("tag=hr", 1), ("status__exact=failed", 1)):  # fmt: skip
        listed = staff.get(f"/admin/knowledge/document/?{query}").context["cl"].result_count
        assert listed == expected, query
    refused = staff.get("/admin/knowledge/document/?pipeline_version__exact=x")
    assert refused.status_code == 302 and refused["Location"].endswith("?e=1")


TYPED_TAGS = [
    " HR , hr,hr,,Policy ",
    '[" a ", "a", "", "A"]',
    "cafe\u0301, caf\u00e9, Café",
    "one,  two words ,one",
]


@pytest.mark.parametrize("typed", TYPED_TAGS)
def test_upload_tags_are_the_apis_for_the_same_typed_text(
    typed, django_capture_on_commit_callbacks
):
    """The admin's upload reads its tags field as the API reads an upload's: the same text gives
    the same tags (trimmed, NFC, blanks left out, each once, case as typed, the JSON-list form
    too). The admin dropped repeats the API kept, and took no JSON list ('["a"]' was the tag
    '["a"]'); the API's JSON list kept ' a ' and '' as sent."""
    from tests.world import build_tenant

    side = build_tenant("tags-alike")
    staff = staff_client(side.tenant, "alice")
    with django_capture_on_commit_callbacks(execute=False):
        api = side.client().post(
            f"/v1/datasets/{side.dataset.pk}/documents",
            {"file": SimpleUploadedFile("api.md", b"# API\n\nSent through the API."),
             "tags": typed},
            format="multipart",
        )  # fmt: skip
        admin = staff.post(
            f"/admin/knowledge/dataset/{side.dataset.pk}/upload/",
            {"documents": [SimpleUploadedFile("admin.md", b"# Admin\n\nSent in the admin.")],
             "tags": typed},
        )  # fmt: skip
    assert api.status_code == 202, api.json()
    assert admin.status_code == 302
    by_source = {d.source: d.tags for d in Document.objects.for_tenant(side.tenant)}
    assert by_source["admin.md"] == by_source["api.md"] == api.json()["tags"]
    assert len(set(by_source["admin.md"])) == len(by_source["admin.md"])
    assert all(tag == tag.strip() and tag for tag in by_source["admin.md"])


@pytest.mark.parametrize("typed", ["x" * 101, ",".join(f"t{n}" for n in range(101)), "[1, 2]"])
def test_upload_tags_the_api_refuses_the_admin_refuses(typed):
    from tests.world import build_tenant

    side = build_tenant("tags-refused")
    staff = staff_client(side.tenant, "alice")
    api = side.client().post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"file": SimpleUploadedFile("api.md", b"# API\n\nRefused."), "tags": typed},
        format="multipart",
    )
    admin = staff.post(
        f"/admin/knowledge/dataset/{side.dataset.pk}/upload/",
        {"documents": [SimpleUploadedFile("admin.md", b"# Admin\n\nRefused.")], "tags": typed},
    )
    assert api.status_code == 400
    assert admin.status_code == 200  # the form again, with its error
    message = api.json()["error"]["details"]["tags"][0]
    assert message in admin.content.decode().replace("&quot;", '"')
    sources = Document.objects.for_tenant(side.tenant).values_list("source", flat=True)
    assert not {"api.md", "admin.md"} & set(sources)

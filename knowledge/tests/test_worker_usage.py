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
    assert "It is queued again by itself once the quota has room: when it resets on " in message
    assert message.endswith(
        f"To try sooner: POST /v1/documents/{document['id']}/reingest."
    ), message
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


@pytest.mark.parametrize("raise_by", ["save", "queryset update"])
def test_a_document_refused_for_the_quota_is_ingested_once_the_quota_is_raised(tmp_path, raise_by):
    """It failed quota_exceeded and stayed failed: nothing queued it again when the quota was
    raised or the month turned. Now celery beat does (INGEST_QUOTA_RETRY_SECONDS), once. A
    quota raised with a queryset ``.update()`` (no ``save()``: the tenant's ``updated_at``,
    which the re-queue reads, stayed as it was) left it failed until the month turned; the
    database moves it now (tenants migration 0007), whoever writes the quota."""
    from knowledge.intake import requeue_over_quota
    from tenants.models import Tenant

    side = build_tenant("acme")
    side.tenant.monthly_token_quota = usage(side, "day")["quota"]["used_this_month"] + 5
    side.tenant.save()
    log = tmp_path / "worker.log"
    document = ingest(side, "refunds.md", GUIDE, log)
    assert (document["status"], document["error"]["code"]) == ("failed", "quota_exceeded")
    assert requeue_over_quota() == 0  # nothing changed since it failed: it waits

    if raise_by == "save":
        side.tenant.monthly_token_quota = None  # raised, as the staff admin saves a tenant
        side.tenant.save()
    else:
        Tenant.objects.filter(pk=side.tenant.pk).update(monthly_token_quota=None)
    with celery_worker(child_env(INGEST_QUOTA_RETRY_SECONDS="1"), log, beat=True):
        try:
            wait_for(
                lambda: finished(document["id"])
                and Chunk.all_tenants.filter(document_id=document["id"]).exists(),
                timeout=120,
                what="the requeued document",
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
    again = side.client().get(f"/v1/documents/{document['id']}").json()
    assert again["status"] == "ready" and again["error"] is None, again
    assert requeue_over_quota() == 0  # ready now: nothing to queue again


def test_a_quota_raised_in_the_staff_admin_requeues_its_refused_document_at_once(tmp_path):
    """A document refused for the quota waited for celery beat's sweep after a superuser raised
    the quota in the admin: up to INGEST_QUOTA_RETRY_SECONDS, 15 minutes. The save now sends
    the tenant's re-queue as it commits: a worker without beat ingests the document."""
    from knowledge.intake import requeue_over_quota
    from tenants.models import AuditLog
    from tenants.tests.factories import TenantFactory
    from tests.staff import change_form_data, staff_client

    side = build_tenant("acme")
    other = build_tenant("other")  # its own refused document: not this save's to queue
    for each in (side, other):
        each.tenant.monthly_token_quota = usage(each, "day")["quota"]["used_this_month"] + 5
        each.tenant.save()
    root = staff_client(TenantFactory(slug="home"), "root", superuser=True)
    change = f"/admin/tenants/tenant/{side.tenant.pk}/change/"
    log = tmp_path / "worker.log"
    with celery_worker(child_env(), log):  # no beat: only the save can queue it again
        ids = [upload(side, "refunds.md", GUIDE), upload(other, "refunds.md", GUIDE)]
        wait_for(lambda: all(map(finished, ids)), timeout=120, what="the documents")
        document, others = (Document.all_tenants.get(pk=pk) for pk in ids)
        for refused in (document, others):
            assert (refused.status, refused.error_code) == ("failed", "quota_exceeded")

        raised = change_form_data(root.get(change), monthly_token_quota=10**9)
        response = root.post(change, raised)
        assert response.status_code == 302, response.content[:2000]
        try:
            wait_for(
                lambda: Chunk.all_tenants.filter(document_id=document.pk).exists()
                and finished(str(document.pk)),
                timeout=120,
                what="the document queued again by the admin's save",
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
    again = side.client().get(f"/v1/documents/{document.pk}").json()
    assert again["status"] == "ready" and again["error"] is None, again
    reingests = AuditLog.objects.for_tenant(side.tenant).filter(action="document.reingest")
    assert list(reingests.values_list("target_id", "changes__reason")) == [
        (str(document.pk), "quota_exceeded")
    ]
    # It names the staff user whose save queued it (it named celery beat's sweep, which had
    # not acted), as the tenant's admin reads it.
    audit = side.client().get(f"/v1/audit-logs?target_id={document.pk}&action=document.reingest")
    assert [(e["actor_type"], e["actor_label"]) for e in audit.json()["data"]] == [
        ("staff", "root")
    ]
    # The other tenant's document waits for its own quota: the save queued this tenant's only.
    still = other.client().get(f"/v1/documents/{others.pk}").json()
    assert (still["status"], still["error"]["code"]) == ("failed", "quota_exceeded")
    assert requeue_over_quota() == 0  # nothing left for the sweep: ready, or no change since


def test_documents_refused_for_the_quota_are_queued_again_once_after_the_month_turns():
    import datetime as dt

    from django.utils import timezone

    from knowledge.intake import requeue_over_quota
    from knowledge.tests.factories import DocumentFactory

    side = build_tenant("acme")
    side.tenant.monthly_token_quota = 10**9
    side.tenant.save()
    failed = {"status": "failed", "error_code": "quota_exceeded", "error_message": "no room"}
    last_month = timezone.now().replace(day=1) - dt.timedelta(days=1)
    earlier = DocumentFactory(tenant=side.tenant, dataset=side.dataset, **failed)
    this_month = DocumentFactory(tenant=side.tenant, dataset=side.dataset, **failed)
    other = DocumentFactory(tenant=side.tenant, dataset=side.dataset,
                            **{**failed, "error_code": "no_text"})  # fmt: skip
    Document.all_tenants.filter(pk__in=[earlier.pk, other.pk]).update(updated_at=last_month)
    Document.all_tenants.filter(pk=this_month.pk).update(updated_at=timezone.now())

    assert requeue_over_quota() == 1
    statuses = dict(Document.all_tenants.values_list("pk", "status"))
    assert [statuses[d.pk] for d in (earlier, this_month, other)] == ["queued", "failed", "failed"]
    assert requeue_over_quota() == 0  # queued once


def test_a_quota_raised_by_saving_that_field_alone_requeues_and_audits_the_document():
    """``tenant.save(update_fields=["monthly_token_quota"])`` (a shell) left the tenant's
    ``updated_at``, which the re-queue reads as "changed since", as it was: the document waited
    for a month. And the re-queue wrote no audit entry: nothing said who had queued it again."""
    from django.utils import timezone

    from knowledge.intake import requeue_over_quota
    from knowledge.tests.factories import DocumentFactory
    from tenants.models import ApiKey, AuditLog, Role
    from tenants.tests.factories import ApiKeyFactory

    side = build_tenant("acme")
    side.tenant.monthly_token_quota = usage(side, "day")["quota"]["used_this_month"]
    side.tenant.save()
    document = DocumentFactory(tenant=side.tenant, dataset=side.dataset, status="failed",
                               error_code="quota_exceeded", error_message="no room")  # fmt: skip
    failed_at = timezone.now()  # after the tenant was last saved
    Document.all_tenants.filter(pk=document.pk).update(updated_at=failed_at)
    assert side.tenant.updated_at < failed_at
    assert requeue_over_quota() == 0  # the quota is spent: it waits

    side.tenant.monthly_token_quota += 10**6
    side.tenant.save(update_fields=["monthly_token_quota"])

    assert requeue_over_quota() == 1
    document.refresh_from_db()
    assert document.status == "queued"
    entry = AuditLog.all_tenants.get(target_type="document", target_id=str(document.pk))
    assert (entry.action, entry.actor_type, entry.actor_label) == (
        "document.reingest",
        "system",
        "celery beat requeue_over_quota",
    )
    assert entry.changes == {"reason": "quota_exceeded", "dataset_id": str(side.dataset.pk)}
    # a key limited to the bot that searches the dataset reads it, as a reingest's
    limited: ApiKey = ApiKeyFactory(tenant=side.tenant, role=Role.ADMIN, bot_ids=[side.bot.pk])
    listed = side.client(limited).get(f"/v1/audit-logs?target_id={document.pk}").json()
    assert [row["id"] for row in listed["data"]] == [str(entry.pk)]


def test_a_quota_changed_by_any_writer_is_seen_by_the_requeue_and_nothing_else_is():
    """The re-queue reads "the tenant changed since the document failed" from the tenant's
    ``updated_at``, which only ``save()`` moved: a quota raised by ``.update()``,
    ``bulk_update`` or SQL in psql left the document waiting for the month to turn. A change of
    anything but the quota (or whether the tenant is active) still moves nothing."""
    from django.db import connection
    from django.utils import timezone

    from knowledge.intake import requeue_over_quota
    from knowledge.tests.factories import DocumentFactory
    from tenants.models import Tenant

    side = build_tenant("acme")
    spent = usage(side, "day")["quota"]["used_this_month"]
    side.tenant.monthly_token_quota = spent
    side.tenant.save()
    tenants = Tenant.objects.filter(pk=side.tenant.pk)

    def refused():  # (untyped: factory_boy's classes return the model)
        document = DocumentFactory(
            tenant=side.tenant, dataset=side.dataset, status="failed",
            error_code="quota_exceeded", error_message="no room",
        )  # fmt: skip
        Document.all_tenants.filter(pk=document.pk).update(updated_at=timezone.now())
        return document

    writers = [
        lambda quota: tenants.update(monthly_token_quota=quota),
        lambda quota: Tenant.objects.bulk_update(
            [Tenant(pk=side.tenant.pk, monthly_token_quota=quota)], ["monthly_token_quota"]
        ),
        lambda quota: connection.cursor().execute(
            "UPDATE tenants_tenant SET monthly_token_quota = %s WHERE id = %s",
            [quota, side.tenant.pk],
        ),
    ]
    for n, write in enumerate(writers):
        document = refused()
        tenants.update(name=f"renamed {n}", monthly_token_quota=spent)  # spent again: it waits
        assert requeue_over_quota() == 0
        tenants.update(name=f"renamed again {n}")  # no quota change: nothing to try
        assert requeue_over_quota() == 0
        write(spent + 10**6)
        assert requeue_over_quota() == 1, n
        document.refresh_from_db()
        assert document.status == "queued"


def test_a_run_checks_the_quota_as_it_is_when_it_embeds_not_as_it_was_when_claimed():
    """A quota raised while a run parsed its document (it holds the tenant it claimed the
    document with) refused the document under the old quota, after the raise: the re-queue
    ("changed since it failed") then never tried it again."""
    from knowledge.embeddings import get_embedder
    from knowledge.ingestion import _embed_billed
    from knowledge.tests.factories import DocumentFactory
    from tenants.models import Tenant

    side = build_tenant("acme")
    side.tenant.monthly_token_quota = usage(side, "day")["quota"]["used_this_month"]
    side.tenant.save()
    made = DocumentFactory(tenant=side.tenant, dataset=side.dataset, status="processing")
    document = Document.all_tenants.select_related("tenant").get(pk=made.pk)  # as a run claims
    Tenant.objects.filter(pk=side.tenant.pk).update(monthly_token_quota=None)  # while it parses

    vectors = _embed_billed(document, get_embedder(), ["Refunds take five days."], lambda: True)
    assert len(vectors) == 1

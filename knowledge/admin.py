"""Admin for datasets, documents and chunks, with upload and ingestion monitoring.

The document list *is* the ingestion monitor: status counts over the current filter (one
dataset, or all), each document's status, error, timings and chunk count, reingest and delete
actions, and a page that refreshes itself while anything is queued or processing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import CsrfViewMiddleware
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt

from chatbot_site.errors import ApplicationError, PayloadTooLarge
from chatbot_site.staff_admin import (
    AppliedWhenGiven,
    ReadOnlyInline,
    RelatedOnlyFilter,
    TenantConsistentForm,
    TenantScopedAdmin,
    admin_link,
    admin_links,
    may_see,
    scope_to_tenant,
    staff_actor,
)
from knowledge.admin_upload import UploadForm, add_documents
from knowledge.ingestion import PIPELINE_VERSION
from knowledge.intake import document_reingest
from knowledge.models import LANGUAGES, Chunk, Dataset, Document, DocumentStatus
from knowledge.parsers import SUPPORTED
from knowledge.services import dataset_chunks_follow_language, dataset_delete, document_delete

STATUSES = [s.value for s in DocumentStatus]


def monitor_url(dataset_id: Any = None) -> str:
    url = reverse("admin:knowledge_document_changelist")
    return f"{url}?dataset__id__exact={dataset_id}" if dataset_id else url


def status_counts(queryset: QuerySet[Any], total: int) -> dict[str, int]:
    """The documents of ``queryset`` per status, ``total`` of them in all (the list's count,
    already made). Only the statuses of work in progress or failed are counted, read off the
    (tenant, dataset, status) index; ready ones are the rest. A GROUP BY status read every
    document in scope for the ready ones: 100-190 ms at 200,000 documents, on every page."""
    busy = [s for s in STATUSES if s != DocumentStatus.READY]
    rows = queryset.order_by().filter(status__in=busy).values("status").annotate(n=Count("id"))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    # Both counts are a moment apart: a document finished meanwhile is not counted twice.
    counts[DocumentStatus.READY] = max(0, total - sum(counts.values()))
    return counts


class DocumentInline(ReadOnlyInline):
    model = Document
    fields: ClassVar[Any] = ["title", "status", "error_code", "chunk_count", "updated_at"]
    readonly_fields = fields
    ordering = ["-created_at"]
    max_num = 0
    verbose_name_plural = "Documents (newest first; the full list is in the ingestion monitor)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The newest 50 of this dataset (already found in the staff user's scope by the change
        # view): a dataset of thousands of documents must still open quickly.
        match = request.resolver_match
        dataset_id = match.kwargs.get("object_id") if match else None
        if not dataset_id:  # the add page: no documents yet (a sliced queryset was a 500 here)
            return Document.all_tenants.none()
        newest = (
            super()
            .get_queryset(request)
            .filter(dataset_id=dataset_id)
            .order_by("-created_at")
            .values_list("id", flat=True)[:50]
        )
        return Document.all_tenants.filter(id__in=list(newest))


class DatasetForm(TenantConsistentForm):
    # The languages the API accepts: another name is not a text search configuration of the
    # database, which refused it with a 500.
    language = forms.ChoiceField(
        choices=[(name, name) for name in LANGUAGES],
        initial="english",
        help_text="Full-text search configuration.",
    )


@admin.register(Dataset)
class DatasetAdmin(TenantScopedAdmin):
    form = DatasetForm
    list_display = ["name", "tenant", "documents", "ingestion", "chunks", "upload", "updated_at"]
    list_filter = ["language", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = [
        "id",
        "created_at",
        "updated_at",
        "monitor",
        "searched_by",
        "own_vector_index",
    ]
    list_select_related = ["tenant"]
    inlines = [DocumentInline]
    summarize_deletion: ClassVar = {"knowledge.Document": "dataset", "knowledge.Chunk": "dataset"}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        counts = {
            f"n_{status}": Count("documents", filter=Q(documents__status=status))
            for status in STATUSES
        }
        return (
            super()
            .get_queryset(request)
            .annotate(n_documents=Count("documents"), n_chunks=Sum("documents__chunk_count"))
            .annotate(**counts)
        )

    def get_urls(self) -> list[URLPattern]:
        # CSRF is checked inside the view, so that an upload over the size limit (which the
        # upload handler refuses while the body streams in) is a message, not a 500.
        view = self.admin_site.admin_view(csrf_exempt(self.upload_view))
        return [
            path("<path:object_id>/upload/", view, name="knowledge_dataset_upload"),
            *super().get_urls(),
        ]

    @admin.display(description="documents", ordering="n_documents")
    def documents(self, obj: Any) -> int:
        return int(obj.n_documents)

    @admin.display(description="ingestion")
    def ingestion(self, obj: Any) -> str:
        parts = [(s, getattr(obj, f"n_{s}")) for s in STATUSES if getattr(obj, f"n_{s}")]
        if not parts:
            return "—"
        url = monitor_url(obj.pk)
        return format_html_join(
            " · ",
            '<a href="{}&status__exact={}" class="doc-status doc-status-{}">{} {}</a>',
            ((url, s, s, n, s) for s, n in parts),
        )

    @admin.display(description="chunks", ordering="n_chunks")
    def chunks(self, obj: Any) -> int:
        return int(obj.n_chunks or 0)

    @admin.display(description="")
    def upload(self, obj: Any) -> str:
        url = reverse("admin:knowledge_dataset_upload", args=[obj.pk])
        return format_html('<a href="{}">Upload…</a>', url)

    @admin.display(description="ingestion monitor")
    def monitor(self, obj: Any) -> str:
        upload = reverse("admin:knowledge_dataset_upload", args=[obj.pk])
        return format_html(
            '<a href="{}">Monitor ingestion</a> · <a href="{}">Upload documents</a>',
            monitor_url(obj.pk),
            upload,
        )

    @admin.display(description="searched by bots")
    def searched_by(self, obj: Any) -> str:
        return admin_links(obj.bots.all()) if obj.pk else "—"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # in the admin's transaction
        if change and "language" in form.changed_data:
            dataset_chunks_follow_language(obj)

    def delete_object(self, request: HttpRequest, obj: Any) -> None:
        dataset_delete(tenant=obj.tenant, actor=staff_actor(request), dataset=obj)

    def upload_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dataset = self.get_object(request, object_id)  # another tenant's: 404
        if not self.has_change_permission(request, dataset):
            raise PermissionDenied
        try:
            if rejected := CsrfViewMiddleware(HttpResponse).process_view(
                request, self.upload_view, (), {}
            ):
                return rejected
            form = UploadForm(request.POST or None, request.FILES or None)
        except PayloadTooLarge as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.path)
        if request.method == "POST" and form.is_valid():
            outcome = add_documents(
                dataset=dataset,
                actor=staff_actor(request),
                files=form.cleaned_data["documents"],
                urls=form.cleaned_data["urls"],
                tags=form.cleaned_data["tags"],
            )
            if outcome.queued or outcome.existing:
                messages.success(request, outcome.summary())
            for error in outcome.errors:
                messages.error(request, error)
            return HttpResponseRedirect(monitor_url(dataset.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload documents to {dataset}",
            "dataset": dataset,
            "form": form,
            "opts": self.opts,
            "max_mb": settings.INGEST_MAX_UPLOAD_BYTES // (1024 * 1024),
            "monitor_url": monitor_url(dataset.pk),
        }
        return TemplateResponse(request, "staff/dataset_upload.html", context)


# The tag filter's choices are the tags of this many of the newest documents in scope.
TAG_CHOICES_FROM = 1000


class TagFilter(AppliedWhenGiven, admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # The tags in use lately (read off the (tenant, created_at) index) and the one chosen.
        # Every tag of every document in scope, a SELECT DISTINCT unnest over all of them, took
        # 180-230 ms at 200,000 documents, on every page of the list.
        scoped = scope_to_tenant(request, Document.all_tenants.all())
        newest = scoped.order_by("-created_at").values_list("tags", flat=True)
        tags = {tag for row in newest[:TAG_CHOICES_FROM] for tag in row}
        if self.value():
            tags.add(str(self.value()))
        return [(t, t) for t in sorted(tags)[:100]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(tags__contains=[value]) if value else queryset


class KnownChoicesFilter(AppliedWhenGiven, admin.SimpleListFilter):
    """A field's filter whose choices are the values the code can give it, known without a
    query (under the parameter of Django's own, so its links keep working). Django's own
    (AllValuesFieldListFilter) asked for every distinct value in scope: a SELECT DISTINCT over
    every document, 120-170 ms each at 200,000, on every page of the list."""

    field = ""
    known: ClassVar[list[tuple[str, str]]] = []

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return self.known

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in dict(self.known):  # Django's "incorrect lookup" page, as for others
            raise IncorrectLookupParameters(f"{self.parameter_name}={value!r}")
        return queryset.filter(**{self.field: value})


class ContentTypeFilter(KnownChoicesFilter):
    title = "content type"
    parameter_name = "content_type__exact"
    field = "content_type"
    # What intake and a URL's fetch store (``""``: a URL not fetched yet).
    known: ClassVar = [(t, t) for t in SUPPORTED] + [("", "not fetched yet")]


class PipelineVersionFilter(KnownChoicesFilter):
    title = "pipeline version"
    parameter_name = "pipeline_version__exact"
    field = "pipeline_version"
    # 0: not ingested yet, or by a run before versions were recorded.
    known: ClassVar = [(str(v), str(v)) for v in range(PIPELINE_VERSION, -1, -1)]


@admin.register(Document)
class DocumentAdmin(TenantScopedAdmin):
    change_list_template = "staff/document_change_list.html"
    list_display = ["title", "dataset_link", "status_badge", "error", "chunk_count", "timing",
                    "attempts", "updated_at"]  # fmt: skip
    list_filter = ["status", ("dataset", RelatedOnlyFilter), TagFilter,
                   ContentTypeFilter, "source_type", PipelineVersionFilter, "created_at",
                   "ingested_at"]  # fmt: skip
    search_fields = ["title", "source", "error_code"]
    list_select_related = ["dataset"]
    actions = ["reingest", "delete_selected"]
    readonly_fields = ["chunks_link"]
    list_per_page = 50
    # The total under a filtered list is a second COUNT of every document in scope (30-60 ms
    # at 200,000); the monitor's counts per status say it.
    show_full_result_count = False
    summarize_deletion: ClassVar = {"knowledge.Chunk": "document"}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # documents are added by upload, on the dataset (knowledge.admin_upload)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # what ingestion wrote is read-only; reingest or delete instead

    def has_reingest_permission(self, request: HttpRequest) -> bool:
        return may_see(request)

    @admin.display(description="dataset", ordering="dataset__name")
    def dataset_link(self, obj: Document) -> str:
        return admin_link(obj.dataset)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Document) -> str:
        return format_html('<span class="doc-status doc-status-{0}">{0}</span>', obj.status)

    @admin.display(description="error", ordering="error_code")
    def error(self, obj: Document) -> str:
        if not obj.error_code:
            return ""
        message = (obj.error_message or "")[:200]
        return format_html("<strong>{}</strong> {}", obj.error_code, message)

    @admin.display(description="timings (ms)")
    def timing(self, obj: Document) -> str:
        stages = obj.timings or {}
        return " · ".join(f"{k} {v}" for k, v in stages.items() if isinstance(v, int | float))

    @admin.display(description="chunks")
    def chunks_link(self, obj: Document) -> str:
        url = reverse("admin:knowledge_chunk_changelist")
        return format_html('<a href="{}?document__id__exact={}">{} chunks</a>', url, obj.pk,
                           obj.chunk_count)  # fmt: skip

    @admin.action(description="Reingest selected documents", permissions=["reingest"])
    def reingest(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        done, busy = 0, 0
        for document in queryset.select_related("tenant"):
            try:
                document_reingest(
                    tenant=document.tenant, actor=staff_actor(request), document=document
                )
                done += 1
            except ApplicationError:
                busy += 1
        messages.success(request, f"Queued {done} document(s) for ingestion again.")
        if busy:
            messages.warning(request, f"{busy} document(s) were already queued or processing.")

    def delete_object(self, request: HttpRequest, obj: Any) -> None:
        document_delete(tenant=obj.tenant, actor=staff_actor(request), document=obj)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {"title": "Ingestion monitor", **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            changelist = context["cl"]
            counts = status_counts(changelist.queryset, changelist.result_count)
            busy = counts["queued"] + counts["processing"]
            dataset_id = request.GET.get("dataset__id__exact")
            context.update(
                status_counts=counts,
                refresh_seconds=settings.ADMIN_MONITOR_REFRESH_SECONDS if busy else 0,
                upload_url=(
                    reverse("admin:knowledge_dataset_upload", args=[dataset_id])
                    if dataset_id
                    else ""
                ),
            )
        return response


@admin.register(Chunk)
class ChunkAdmin(TenantScopedAdmin):
    read_only = True
    list_display = ["__str__", "document_link", "page", "token_count", "injection_suspected",
                    "embedding_model"]  # fmt: skip
    list_filter = ["injection_suspected", ("dataset", RelatedOnlyFilter)]
    linked_lookups = ("document__id__exact",)  # a document's "chunks" link (not a filter: too many)
    search_fields = ["text"]
    list_select_related = ["document"]
    exclude = ["embedding"]
    show_full_result_count = False
    # A document's chunks in order, read off the (document, ordinal) unique index. The model's
    # ordering, ["document", "ordinal"], sorts by the document's own (newest first): a join
    # and a sort of every chunk in scope for each page (200,000 chunks: 1 s; page 1,000: 2 s).
    ordering = ["document_id", "ordinal"]

    @admin.display(description="document")
    def document_link(self, obj: Chunk) -> str:
        return admin_link(obj.document)

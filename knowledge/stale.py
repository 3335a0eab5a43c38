"""Documents an older ingestion pipeline chunked (their ``pipeline_version`` is below a
version of :data:`knowledge.ingestion.PIPELINE_CHANGES` that changed their content type), and their reingest a batch at a time, through the
reingest service (:func:`knowledge.intake.document_reingest`): `manage.py reingest_stale`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from chatbot_site.errors import Conflict, NotFound
from knowledge.intake import document_reingest
from knowledge.models import Document, DocumentStatus, SourceType
from knowledge.selectors import documents_unfinished
from tenants.models import Tenant
from tenants.services import Actor


def documents_stale(
    *, tenant: Tenant | None = None, include_failed: bool = False
) -> QuerySet[Document]:
    """Documents whose searched chunks an older pipeline made (their ``pipeline_version`` is
    below a version of :data:`knowledge.ingestion.PIPELINE_CHANGES` that changed their content
    type) or another embedding model than the one
    configured (``EMBEDDING_MODEL`` changed: their vectors and a question's are not comparable),
    of active tenants (a deactivated one's
    would wait queued), oldest ingested first. Not those queued or being ingested (their run
    makes them current), nor, unless ``include_failed``, those whose last run failed: a run
    after the chunks were made (a URL gone, a stored file lost) that would likely fail again."""
    from knowledge.embeddings import get_embedder
    from knowledge.ingestion import PIPELINE_CHANGES

    statuses = [DocumentStatus.READY]
    if include_failed:
        statuses.append(DocumentStatus.FAILED)
    documents = Document.all_tenants if tenant is None else Document.objects.for_tenant(tenant)
    older = ~Q(embedding_model=get_embedder().model)
    for version, content_types in PIPELINE_CHANGES.items():
        changed = Q(pipeline_version__lt=version)
        if content_types is not None:
            changed &= Q(content_type__in=content_types)
        older |= changed
    return documents.filter(
        older, status__in=statuses, chunk_count__gt=0, tenant__is_active=True
    ).order_by("ingested_at", "pk")


def documents_in_flight() -> int:
    """Documents queued or being ingested, of every active tenant: the ingestion queue's depth."""
    return documents_unfinished(Document.all_tenants.filter(tenant__is_active=True)).count()


def original_missing(document: Document) -> bool:
    """Whether a reingest of ``document`` cannot read its original: an upload's or a record's
    stored file is gone (it would fail ``missing_file``). A URL is fetched again."""
    from django.core.files.storage import default_storage

    if document.source_type == SourceType.URL:
        return False
    return not document.file or not default_storage.exists(document.file.name)


@dataclass
class StaleRun:
    queued: list[Any]
    already_queued: list[Any]  # queued or being ingested by someone else meanwhile
    missing_file: list[Any]


def documents_reingest_stale(
    *,
    actor: Actor,
    limit: int,
    tenant: Tenant | None = None,
    include_failed: bool = False,
    dry_run: bool = False,
    skip: frozenset[Any] = frozenset(),
) -> StaleRun:
    """Queue up to ``limit`` of :func:`documents_stale` for a reingest, each through
    :func:`document_reingest` (its earlier chunks stay searched until the new run stores its
    own; one already queued or being ingested is counted, not an error). A document whose
    original is gone (:func:`original_missing`) is not queued; ``skip`` names documents not to
    look at again. ``dry_run``: the documents that would be queued, none queued."""
    run = StaleRun(queued=[], already_queued=[], missing_file=[])
    seen = set(skip)
    while len(run.queued) < limit:
        candidates = list(
            documents_stale(tenant=tenant, include_failed=include_failed)
            .exclude(pk__in=seen)
            .select_related("tenant")[: limit - len(run.queued)]
        )
        if not candidates:
            break
        for document in candidates:
            seen.add(document.pk)
            if original_missing(document):
                run.missing_file.append(document.pk)
                continue
            if not dry_run:
                try:
                    document_reingest(tenant=document.tenant, actor=actor, document=document)
                except Conflict:
                    run.already_queued.append(document.pk)
                    continue
                except NotFound:  # deleted since it was listed
                    continue
            run.queued.append(document.pk)
    return run

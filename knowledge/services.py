"""Writes for datasets and bot ↔ dataset links. (Ingestion services arrive with issue 4.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from django.db import transaction
from django.db.models import QuerySet

from bots.models import Bot, Scope
from bots.services import bot_create, bot_update
from chatbot_site.database import key_share, links_lock, without_statement_timeout
from chatbot_site.errors import NotFound, ValidationFailed
from knowledge.models import BotDataset, Chunk, Dataset, Document
from tenants.models import Tenant
from tenants.services import (
    Actor,
    audit_record,
    full_clean_or_raise,
    save_or_conflict,
    update_audited,
)

log = structlog.get_logger(__name__)


@transaction.atomic
def dataset_create(*, tenant: Tenant, actor: Actor, name: str, **fields: Any) -> Dataset:
    dataset = Dataset(tenant=tenant, name=name, **fields)
    full_clean_or_raise(dataset, exclude=["tenant"], validate_unique=False)
    save_or_conflict(dataset, conflict=f"A dataset named {name!r} already exists.")
    audit_record(
        tenant=tenant,
        actor=actor,
        action="dataset.create",
        target=dataset,
        changes={"name": name, **fields},
    )
    return dataset


@transaction.atomic
def bot_datasets_set(
    *, tenant: Tenant, actor: Actor, bot: Bot, datasets: Iterable[Dataset], audit: bool = True
) -> list[Dataset]:
    """Make ``datasets`` exactly the ones ``bot`` searches.

    The bot's row is locked first, so that two requests setting its datasets at once take
    turns (both inserted a link the other was inserting: a 500), and the datasets' rows are
    share-locked, so that a deletion of one (:func:`dataset_delete` locks it before it
    collects its links) either waits for these links and deletes them too or has deleted it:
    a ``400``, as if it had been missing from the start (a link to it failed at commit: a 500).
    Their links are locked before (:func:`links_lock`): a change to one by a key limited to
    other bots (allowed while only its bots use it) finishes first, or waits and sees this."""
    wanted = {d.pk: d for d in datasets}
    if bot.tenant_id != tenant.pk or any(d.tenant_id != tenant.pk for d in wanted.values()):
        raise ValueError("bot and datasets must belong to the tenant")
    if not Bot.objects.for_tenant(tenant).select_for_update(no_key=True).filter(pk=bot.pk):
        raise NotFound("Bot not found.")  # deleted meanwhile
    links_lock(Dataset, wanted, shared=False)
    kept = key_share(Dataset, tenant.pk, wanted)
    if gone := [pk for pk in wanted if pk not in kept]:
        raise ValidationFailed(
            details={"dataset_ids": [f"Dataset not found: {pk}" for pk in sorted(map(str, gone))]}
        )
    links = BotDataset.objects.for_tenant(tenant).filter(bot=bot)
    links.exclude(dataset_id__in=wanted).delete()
    existing = set(links.values_list("dataset_id", flat=True))
    BotDataset.all_tenants.bulk_create(
        [
            BotDataset(tenant=tenant, bot=bot, dataset=d)
            for pk, d in wanted.items()
            if pk not in existing
        ]
    )
    if audit:  # off when the caller's own entry (bot.create, bot.update) names the datasets
        audit_record(
            tenant=tenant,
            actor=actor,
            action="bot.datasets_set",
            target=bot,
            changes={"dataset_ids": sorted(str(pk) for pk in wanted)},
        )
    return list(wanted.values())


def bot_dataset_ids(*, tenant: Tenant, bot: Bot) -> list[str]:
    return [
        str(pk)
        for pk in BotDataset.objects.for_tenant(tenant)
        .filter(bot=bot)
        .order_by("dataset__name")
        .values_list("dataset_id", flat=True)
    ]


@transaction.atomic
def bot_create_with_datasets(
    *,
    tenant: Tenant,
    actor: Actor,
    name: str,
    datasets: list[Dataset],
    scope: Scope | None = None,
    **fields: Any,
) -> Bot:
    """A bot and the datasets it searches, as one write and one audit entry."""
    bot = bot_create(
        tenant=tenant,
        actor=actor,
        name=name,
        scope=scope,
        audit_extra={"dataset_ids": sorted(str(d.pk) for d in datasets)},
        **fields,
    )
    bot_datasets_set(tenant=tenant, actor=actor, bot=bot, datasets=datasets, audit=False)
    return bot


@transaction.atomic
def bot_update_with_datasets(
    *,
    tenant: Tenant,
    actor: Actor,
    bot: Bot,
    changes: dict[str, Any],
    datasets: list[Dataset] | None,
) -> Bot:
    bot, fields = bot_update(tenant=tenant, actor=actor, bot=bot, changes=changes)
    audit = {
        f if f != "scope" else "scope_id": getattr(bot, f if f != "scope" else "scope_id")
        for f in fields
    }
    if datasets is not None:
        before = set(bot_dataset_ids(tenant=tenant, bot=bot))
        after = {str(d.pk) for d in datasets}
        if before != after:
            bot_datasets_set(tenant=tenant, actor=actor, bot=bot, datasets=datasets, audit=False)
            audit["dataset_ids"] = sorted(after)
            if not fields:  # only the links changed: the bot was still updated
                bot.save(update_fields=["updated_at"])
    if audit:
        audit_record(tenant=tenant, actor=actor, action="bot.update", target=bot, changes=audit)
    return bot


@transaction.atomic
def dataset_update(
    *, tenant: Tenant, actor: Actor, dataset: Dataset, changes: dict[str, Any]
) -> Dataset:
    """A new ``language`` re-indexes the dataset's chunks in it (their full-text vectors and
    the BM25 statistics follow, kept by PostgreSQL): the question is read in the dataset's
    language, and chunks left in the old one were never found by the text leg again until each
    document was reingested. Not bound by ``DB_STATEMENT_TIMEOUT_SECONDS``: one statement."""
    fields = update_audited(
        tenant=tenant,
        actor=actor,
        instance=dataset,
        changes=changes,
        action="dataset.update",
        conflict=f"A dataset named {changes.get('name', dataset.name)!r} already exists.",
    )
    if "language" in fields:
        dataset_chunks_follow_language(dataset)
    return dataset


def dataset_chunks_follow_language(dataset: Dataset) -> None:
    """Put the dataset's chunks in its (new) language; call in the transaction that changed
    it. PostgreSQL recomputes their ``search_vector`` and moves the BM25 frequencies
    (``knowledge_termstat``) itself. The dataset's row is locked by its update until commit,
    and a worker storing chunks reads the language under a share lock of that row
    (``ingestion._store``): none are stored in the old language after this."""
    without_statement_timeout()
    Chunk.all_tenants.filter(dataset_id=dataset.pk).exclude(language=dataset.language).update(
        language=dataset.language
    )


@transaction.atomic
def dataset_delete(*, tenant: Tenant, actor: Actor, dataset: Dataset) -> None:
    """The dataset, its documents and their chunks; stored files go once the rows are gone.
    Not bound by ``DB_STATEMENT_TIMEOUT_SECONDS``: the chunks go in one statement."""
    without_statement_timeout()
    _lock_against_ingestion(Document.objects.for_tenant(tenant).filter(dataset=dataset))
    # Then its own row (after the documents': a worker storing chunks checks their foreign key
    # to the dataset when it commits), before anything is collected: a link to it
    # (bot_datasets_set) or a document committed after the collection failed the deletion at
    # commit on its foreign key.
    if not Dataset.objects.for_tenant(tenant).select_for_update().filter(pk=dataset.pk):
        return  # deleted meanwhile by another request
    files = list(
        Document.objects.for_tenant(tenant)
        .filter(dataset=dataset)
        .exclude(file="")
        .exclude(file__isnull=True)
        .values_list("file", flat=True)
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="dataset.delete",
        target=dataset,
        changes={"name": dataset.name},
    )
    dataset.delete()
    transaction.on_commit(lambda: _delete_files(files))


@transaction.atomic
def document_delete(*, tenant: Tenant, actor: Actor, document: Document) -> None:
    """The document, its chunks, and its text in the citations of the messages that cited it
    (conversations migration 0004's trigger); its stored file goes once the rows are gone. Not
    bound by ``DB_STATEMENT_TIMEOUT_SECONDS``: its chunks go in one statement, and those
    messages are rewritten in another, each growing with them."""
    without_statement_timeout()
    if not _lock_against_ingestion(Document.objects.for_tenant(tenant).filter(pk=document.pk)):
        raise NotFound("Document not found.")  # deleted meanwhile by another request
    document.refresh_from_db(fields=["file"])  # a URL document's file arrives with its worker
    files = [document.file.name] if document.file else []
    audit_record(
        tenant=tenant,
        actor=actor,
        action="document.delete",
        target=document,
        # Its dataset: the entry stays readable by a key whose bots search it (knowledge.reach).
        changes={
            "title": document.title,
            "source": document.source,
            "dataset_id": document.dataset_id,
        },
    )
    document.delete()
    transaction.on_commit(lambda: _delete_files(files))


def _lock_against_ingestion(documents: QuerySet[Document]) -> list[Any]:
    """Lock the rows before their chunks are collected for deletion. A worker storing chunks
    holds its document's row lock until it commits (``ingestion._store``): without this, its
    chunks could commit between the delete of the chunks and that of the document, and the
    document's deferred foreign key failed at commit (a 500, found by fuzzing). Locked first,
    the delete waits for that worker and then sees its chunks (and the file a URL document's
    worker stored), or the worker waits and then finds its document gone."""
    return list(documents.select_for_update().order_by("pk").values_list("pk", flat=True))


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        try:
            default_storage.delete(name)
        except OSError:  # already gone, or storage unreachable: never fail the delete
            log.warning("document_file_delete_failed", file=name)

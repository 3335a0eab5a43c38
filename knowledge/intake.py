"""Adding documents: uploads, JSON records, re-ingestion. Each new document is stored (the
original file kept, text whose encoding is known on arrival as UTF-8, so re-ingestion needs no
second upload), committed as ``queued`` and only then enqueued. The same content in a dataset is the
existing document, not a second one."""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import json
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chatbot_site.errors import Conflict, NotFound, UnsupportedMediaType, ValidationFailed
from knowledge.fetch import FetchError, check_submitted
from knowledge.models import Chunk, Dataset, Document, DocumentStatus, SourceType
from knowledge.parsers import SUPPORTED, TEXT, TEXT_TYPES
from knowledge.parsers.detect import detect
from knowledge.parsers.text import BOMS, NotInCharset, bom_codec, codec, utf8_pieces
from knowledge.tasks import enqueue_ingest_on_commit
from tenants.models import Tenant
from tenants.services import Actor, audit_record
from tenants.usage import month_start, tokens_used_this_month

log = structlog.get_logger(__name__)
HEAD_BYTES = 65536  # what the type of an upload is detected from


@dataclass(frozen=True)
class Added:
    document: Document
    created: bool


def _audit(
    tenant: Tenant,
    actor: Actor,
    action: str,
    document: Document,
    changes: dict[str, Any] | None = None,
) -> None:
    """A document's entry names its dataset (``changes.dataset_id``), as its deletion's does:
    a key limited to bots that search the dataset reads it after the document is deleted
    (``knowledge.reach``; it lost sight of them with the document)."""
    audit_record(tenant=tenant, actor=actor, action=action, target=document,
                 changes={**(changes or {}), "dataset_id": document.dataset_id})  # fmt: skip


def _existing(tenant: Tenant, dataset: Dataset, content_hash: str) -> Document | None:
    return (
        Document.objects.for_tenant(tenant)
        .filter(dataset=dataset, content_hash=content_hash)
        .first()
    )


def _create(
    *,
    tenant: Tenant,
    actor: Actor,
    dataset: Dataset,
    content: bytes | File | None,
    content_hash: str,
    fields: dict[str, Any],
) -> Added:
    """Insert (or find) the document, store its original, enqueue on commit."""
    if (found := _existing(tenant, dataset, content_hash)) is not None:
        return Added(found, created=False)
    document = Document(tenant=tenant, dataset=dataset, content_hash=content_hash, **fields)
    try:
        with transaction.atomic():
            document.save()
            if content is not None:  # a URL document gets its file when the worker fetches it
                body = content if isinstance(content, File) else ContentFile(content)
                document.file.save("original", body, save=False)
                document.save(update_fields=["file"])
    except IntegrityError:
        # A concurrent upload of the same content (or bytes) won the race: that one is the document.
        found = _existing(tenant, dataset, content_hash)
        if found is None and fields.get("raw_hash"):
            found = _same_bytes(tenant, dataset, fields["raw_hash"])
        if found is None:
            raise
        return Added(found, created=False)
    _audit(tenant, actor, "document.create", document,
           {"title": document.title, "source": document.source,
            "content_type": document.content_type, "tags": document.tags})  # fmt: skip
    enqueue_ingest_on_commit(document.pk)
    return Added(document, created=True)


@dataclass
class _Scanned:
    """One pass over an upload: its hash, its first 64 KiB, and whether it is UTF-8 (when
    asked: the charset a part declares is not used for text that is UTF-8 already)."""

    sha256: str
    head: bytes
    utf8: bool


def _scan(upload: UploadedFile, *, check_utf8: bool) -> _Scanned:
    digest = hashlib.sha256()
    head = b""
    checker = codecs.getincrementaldecoder("utf-8")() if check_utf8 else None
    upload.seek(0)
    for block in upload.chunks():
        if len(head) < HEAD_BYTES:
            head += block[: HEAD_BYTES - len(head)]
        digest.update(block)
        if checker is not None:
            try:
                checker.decode(block)
            except UnicodeDecodeError:
                checker = None
    if checker is not None:
        try:
            checker.decode(b"", final=True)
        except UnicodeDecodeError:
            checker = None
    upload.seek(0)
    return _Scanned(digest.hexdigest(), head, utf8=check_utf8 and checker is not None)


@dataclass
class _Stored:
    """What an upload stores: the file (as it came, or its text re-encoded as UTF-8), its
    size, its hash and its detected type."""

    content: UploadedFile | File
    size: int
    content_hash: str
    content_type: str | None


def _as_utf8(upload: UploadedFile, name: str, encoding: str, errors: str = "strict") -> _Stored:
    """The upload's text, read in the charset its part declares (or its byte order mark
    names), written as UTF-8 to a temporary file a piece at a time. It used to be read whole,
    decoded and encoded again in memory: 8.4 MB of KOI8-R took 50 MB of Python's allocations at
    its peak, now 0.6 MB (docs/BENCHMARKS.md has daphne's). Bytes a declared charset has no
    character for are a ``400`` before anything is stored: the declaration is the client's, and
    a guess at what it meant was what it asked us not to make."""
    digest = hashlib.sha256()
    head = b""
    size = 0
    spool = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
    try:
        upload.seek(0)
        for piece in utf8_pieces(upload.chunks(), encoding, errors):
            if len(head) < HEAD_BYTES:
                head += piece[: HEAD_BYTES - len(head)]
            digest.update(piece)
            spool.write(piece)
            size += len(piece)
    except NotInCharset as exc:
        spool.close()
        label = upload.charset
        label = label.decode("latin-1") if isinstance(label, bytes) else label
        raise ValidationFailed(
            f"The file is not {label} text, the charset its part declares.",
            details={"file": [f"Byte {exc.found.hex(' ')} at offset {exc.offset:,} is not "
                              f"{label} text. Declare the charset the file is written in, or "
                              "send it as UTF-8."]},
        ) from None  # fmt: skip
    finally:
        upload.seek(0)
    spool.seek(0)
    return _Stored(File(spool, name="original"), size, digest.hexdigest(), detect(head, name))


def _declared_is_used(scanned: _Scanned, content_type: str | None, encoding: str) -> bool:
    """Whether the upload's text is read in the charset its part declares (``as_utf8``'s
    rules): not for text with a byte order mark, nor for UTF-8 text (a legacy label on UTF-8
    is common), nor for a PDF, DOCX or binary; UTF-16 and UTF-32 without a byte order mark are
    only known for text once decoded."""
    if scanned.head.startswith(BOMS):
        return False
    wide = encoding.startswith(("utf-16", "utf-32"))
    if scanned.utf8 and not wide:
        return False
    return content_type in TEXT_TYPES or (content_type is None and wide)


@transaction.atomic
def document_add_upload(
    *,
    tenant: Tenant,
    actor: Actor,
    dataset: Dataset,
    upload: UploadedFile,
    title: str = "",
    tags: list[str] | None = None,
) -> Added:
    name = (upload.name or "upload").rsplit("/", 1)[-1][:255]
    encoding = codec(upload.charset)
    declared = encoding not in (None, "utf-8")  # UTF-8 is read first anyway
    scanned = _scan(upload, check_utf8=declared)
    # Zip-based formats need the central directory at the end: detect from the whole file.
    head = scanned.head
    sample = head if not head.startswith(b"PK\x03\x04") else _read_all(upload)
    stored = _Stored(upload, upload.size or 0, scanned.sha256, detect(sample, name))
    bom = bom_codec(head)
    if bom is not None and stored.content_type in TEXT_TYPES:
        # Text with a byte order mark is as known as UTF-8 is: stored as UTF-8 too (bytes
        # UTF-16 cannot read replaced, as the parsers would), so that it is the same document as
        # the same text without the mark or sent in UTF-8.
        stored = _as_utf8(upload, name, bom, errors="replace")
    elif declared and encoding and _declared_is_used(scanned, stored.content_type, encoding):
        # A part declared ``text/plain; charset=koi8-r``: its text is stored as UTF-8 (as a
        # URL's is), and that is the content the hash names.
        stored = _as_utf8(upload, name, encoding)
    if stored.content_type not in SUPPORTED:
        raise UnsupportedMediaType(
            "Unsupported file type: upload PDF, DOCX, Markdown, JSON, HTML or plain text.",
            details={"file": [f"Not a supported document: {name}"]},
        )
    fields = {
        "title": (title or name)[:500],
        "source": name,
        "source_type": SourceType.FILE,
        "content_type": stored.content_type,
        "tags": list(tags or []),
        "byte_size": stored.size,
        "raw_hash": scanned.sha256,
    }
    try:
        if (
            _existing(tenant, dataset, stored.content_hash) is None
            and (twin := _same_bytes(tenant, dataset, scanned.sha256)) is not None
        ):
            if stored.content_hash == scanned.sha256:
                # Stored as they came (no charset, or one not used): these bytes were read
                # in the charset declared before, which says more than no declaration does.
                return Added(twin, created=False)
            return _reread(tenant, actor, twin, stored, raw_hash=scanned.sha256)
        return _create(tenant=tenant, actor=actor, dataset=dataset, content=stored.content,
                       content_hash=stored.content_hash, fields=fields)  # fmt: skip
    finally:
        if stored.content is not upload:
            stored.content.close()


def _same_bytes(tenant: Tenant, dataset: Dataset, raw_hash: str) -> Document | None:
    """The document these very bytes became, whatever charset they were declared in (its
    ``raw_hash``), or, uploaded before ``raw_hash`` was kept, when they were stored as they came
    (no charset, or one that was not used), locked. A worker claims a queued document with a
    conditional UPDATE, which waits for this lock."""
    return (
        Document.objects.for_tenant(tenant)
        .select_for_update()
        .filter(dataset=dataset, source_type=SourceType.FILE)
        .filter(Q(raw_hash=raw_hash) | Q(raw_hash__isnull=True, content_hash=raw_hash))
        .first()
    )


def _reread(
    tenant: Tenant, actor: Actor, document: Document, stored: _Stored, *, raw_hash: str
) -> Added:
    """Bytes uploaded before without a charset or with another one, now with this one: the
    latest declaration says what their text is, so that document is re-read in it (its file
    becomes the UTF-8 text, its hash that text's) and queued again. Without this the same file
    was two documents, one of them read by a guess (often wrong on a short text: KOI8-R read as
    Shift_JIS) or by a declaration the client has since corrected, both searched. Its title,
    source and tags stay, as they do when the same content is uploaded again."""
    if document.status == DocumentStatus.PROCESSING:
        raise Conflict(
            f"Document {document.pk} has these bytes and is being ingested; upload the file "
            "again when it has finished to have it read in the declared charset.",
            details={"document_id": str(document.pk)},
        )
    _replace_original(document, stored.content)
    document.content_hash = stored.content_hash
    document.raw_hash = raw_hash
    document.content_type = stored.content_type or document.content_type
    document.byte_size = stored.size
    _queue_again(document)
    document.save(update_fields=["file", "content_hash", "raw_hash", "content_type",
                                 "byte_size", *REQUEUED_FIELDS, "updated_at"])  # fmt: skip
    _audit(
        tenant,
        actor,
        "document.update",
        document,
        {"content_hash": stored.content_hash, "content_type": document.content_type},
    )
    enqueue_ingest_on_commit(document.pk)
    return Added(document, created=True)


def _read_all(upload: UploadedFile) -> bytes:
    upload.seek(0)
    data = upload.read()
    upload.seek(0)
    return data


def record_text(record: dict[str, Any]) -> str:
    title = record.get("title") or ""
    return f"{title}\n\n{record['text']}".strip() if title else str(record["text"])


@transaction.atomic
def documents_add_records(
    *, tenant: Tenant, actor: Actor, dataset: Dataset, records: list[dict[str, Any]]
) -> list[Added]:
    """One document per record. A record whose ``external_id`` exists with other content
    replaces that document's content and queues it again (sync semantics)."""
    results = []
    for record in records:
        text = record_text(record)
        data = text.encode("utf-8")
        canonical = json.dumps(
            {"title": record.get("title", ""), "text": record["text"],
             "metadata": record.get("metadata") or {}},
            sort_keys=True, ensure_ascii=False,
        )  # fmt: skip
        content_hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        external_id = record.get("external_id") or None
        fields = {
            "title": (record.get("title") or "")[:500],
            "source": f"record:{external_id}" if external_id else "record",
            "source_type": SourceType.RECORD,
            "content_type": TEXT,
            "tags": list(record.get("tags") or []),
            "metadata": record.get("metadata") or {},
            "external_id": external_id,
            "byte_size": len(data),
        }
        added = _replace_known(tenant, actor, dataset, data, content_hash, fields)
        if added is None:
            try:
                added = _create(tenant=tenant, actor=actor, dataset=dataset, content=data,
                                content_hash=content_hash, fields=fields)  # fmt: skip
            except IntegrityError:
                # A concurrent request created this external_id (with other content) since it
                # was looked up (a 500 before): replaced like any known one.
                added = _replace_known(tenant, actor, dataset, data, content_hash, fields)
                if added is None:
                    raise
        results.append(added)
    return results


def _replace_known(
    tenant: Tenant, actor: Actor, dataset: Dataset, data: bytes, content_hash: str,
    fields: dict[str, Any],
) -> Added | None:  # fmt: skip
    """The document of the record's ``external_id`` if there is one: replaced when the content
    is new, retagged when only the tags are, as it is (``created=False``) when neither; None for
    a record without a known id."""
    external_id = fields["external_id"]
    if not external_id:
        return None
    same_id = (
        Document.objects.for_tenant(tenant).filter(dataset=dataset, external_id=external_id).first()
    )
    if same_id is None:
        return None
    if same_id.content_hash != content_hash:
        return _replace(tenant, actor, same_id, data, content_hash, fields)
    if same_id.tags != fields["tags"]:
        return _retag(tenant, actor, same_id, fields["tags"])
    return Added(same_id, created=False)


def _replace(
    tenant: Tenant, actor: Actor, document: Document, data: bytes, content_hash: str,
    fields: dict[str, Any],
) -> Added:  # fmt: skip
    if document.status == DocumentStatus.PROCESSING:
        raise Conflict(f"Document {_name(document)!r} is being ingested; try again shortly.")
    if (twin := _existing(tenant, document.dataset, content_hash)) is not None:
        raise _same_content(document, twin)
    if document.indexed_title is None:  # its chunks were made before runs kept their title
        document.indexed_title = document.title
    for name, value in fields.items():
        setattr(document, name, value)
    document.content_hash = content_hash
    _queue_again(document)
    try:
        with transaction.atomic():  # the old file's deletion is dropped with this savepoint
            _replace_original(document, ContentFile(data))
            document.save()
    except IntegrityError:
        # Another request stored that content in this dataset meanwhile.
        if (twin := _existing(tenant, document.dataset, content_hash)) is None:
            raise
        raise _same_content(document, twin) from None
    # The content ingested before is searched until the new content's run replaces it: with the
    # record's new tags already, as a retag gives them (a scope's tag taken away kept it in that
    # scope's answers until then).
    Chunk.all_tenants.filter(document_id=document.pk).update(tags=document.tags)
    _audit(
        tenant,
        actor,
        "document.update",
        document,
        {"content_hash": content_hash, "title": document.title},
    )
    enqueue_ingest_on_commit(document.pk)
    return Added(document, created=True)


@transaction.atomic
def document_new_version(*, tenant: Tenant, actor: Actor, document: Document, data: bytes) -> Added:
    """A file's new version becomes the document's content, the text ingested before searched
    until the new run stores its chunks (as a record's new content is). ``seed_demo`` added
    the new version and deleted the old: until the worker had read it, the file was not
    searched at all (after a pull that changed the README, `make run`'s printed question was
    refused ``out_of_scope``)."""
    locked = Document.objects.for_tenant(tenant).select_for_update().filter(pk=document.pk).first()
    if locked is None:
        raise NotFound("Document not found.")
    content_hash = hashlib.sha256(data).hexdigest()
    fields = {
        "content_type": detect(data, locked.source) or locked.content_type,
        "byte_size": len(data),
        "raw_hash": content_hash,
    }
    return _replace(tenant, actor, locked, data, content_hash, fields)


def _retag(tenant: Tenant, actor: Actor, document: Document, tags: list[str]) -> Added:
    """The same record sent again with other tags: the document and its chunks (retrieval
    filters on theirs) take the new tags at once, with nothing to reingest. They were ignored:
    a record re-sent without the tag a scope searches stayed in that scope's answers."""
    locked = Document.objects.for_tenant(tenant).select_for_update().get(pk=document.pk)
    locked.tags = tags
    locked.save(update_fields=["tags", "updated_at"])
    # A run storing this document's chunks later copies the tags of its locked row: these.
    Chunk.all_tenants.filter(document_id=locked.pk).update(tags=tags)
    _audit(tenant, actor, "document.update", locked, {"tags": tags})
    return Added(locked, created=False)


def _name(document: Document) -> str:
    """How a replaced document is named in an error: a record by its id, a file by its name."""
    return document.external_id or document.source


def _same_content(document: Document, twin: Document) -> Conflict:
    """A record's new content is already another document of the dataset: content is stored
    once per dataset, so the record cannot become a second copy of it."""
    return Conflict(
        f"Record {_name(document)!r}: its new content is already document {twin.pk} "
        "in this dataset (same title, text and metadata); change one of them or delete that "
        "document first.",
        details={"external_id": document.external_id, "document_id": str(twin.pk)},
    )


# What :func:`_queue_again` sets.
REQUEUED_FIELDS = ["status", "attempts", "transient_failures", "error_code", "error_message"]


def _queue_again(document: Document) -> None:
    """The document as a new run of it is queued (a reingest, new content for a record, bytes
    re-read in their declared charset): no attempts yet, no error."""
    document.status = DocumentStatus.QUEUED
    document.attempts = document.transient_failures = 0
    document.error_code = document.error_message = None


def requeue_over_quota(*, tenant_id: uuid.UUID | None = None, actor: Actor | None = None) -> int:
    """Queue again the documents that failed ``quota_exceeded`` when their tenant's quota may
    have room for them now: the month turned since they failed, or the tenant was changed
    since (its ``updated_at``: moved by every save, and by the database whenever its quota or
    ``is_active`` changes, whoever writes it: tenants migration 0007), and some of it is left.
    Each is queued once per such change: a document that still does not fit fails again,
    after both, and waits for the next. Idempotent (a queued document is no longer failed);
    returns how many were queued. Before, they waited for a reingest by hand. Each is audited
    (``document.reingest``, actor system ``celery beat requeue_over_quota``, ``changes.reason``
    ``quota_exceeded``), as ``reingest_stale``'s are: before, nothing said who had queued it.
    ``tenant_id``: that tenant's documents only (the re-queue a quota raised in the staff admin
    sends on commit, ``tenants.services.tenant_quota_changed``); celery beat's sweep passes none.
    ``actor``: who the audit entries name; that save passes its staff user (before, its
    entries named celery beat, which had not acted); the sweep passes none (celery beat).
    """
    now = timezone.now()
    actor = actor or Actor.system("celery beat requeue_over_quota")
    month = dt.datetime.combine(month_start(now.astimezone(dt.UTC).date()), dt.time.min, dt.UTC)
    waiting = Document.all_tenants.filter(
        Q(updated_at__lt=month) | Q(updated_at__lt=F("tenant__updated_at")),
        status=DocumentStatus.FAILED,
        error_code="quota_exceeded",
        tenant__is_active=True,
    )
    if tenant_id is not None:
        waiting = waiting.filter(tenant_id=tenant_id)
    queued = 0
    for tenant in Tenant.objects.filter(pk__in=waiting.values("tenant_id")):
        quota = tenant.monthly_token_quota
        if quota is not None and tokens_used_this_month(tenant=tenant) >= quota:
            continue  # nothing left: its documents wait on
        with transaction.atomic():
            locked = waiting.filter(tenant=tenant).select_for_update(of=("self",), skip_locked=True)
            for document in locked[:1000]:
                _queue_again(document)
                document.updated_at = now
                document.save(update_fields=[*REQUEUED_FIELDS, "updated_at"])
                _audit(tenant, actor, "document.reingest", document, {"reason": "quota_exceeded"})
                enqueue_ingest_on_commit(document.pk)
                queued += 1
    if queued:
        log.info("documents_requeued_for_quota", queued=queued)
    return queued


def _replace_original(document: Document, content: File) -> None:
    """The document's stored original becomes ``content`` (not saved to the row yet); the old
    file is deleted once the transaction commits, and kept if it does not."""
    old_file = document.file.name if document.file else None
    document.file.save("original", content, save=False)
    if old_file and old_file != document.file.name:
        transaction.on_commit(lambda: _delete_quietly(old_file))


def _delete_quietly(name: str) -> None:
    from django.core.files.storage import default_storage

    try:
        default_storage.delete(name)
    except OSError:
        log.warning("document_file_delete_failed", file=name)


@transaction.atomic
def document_add_url(
    *,
    tenant: Tenant,
    actor: Actor,
    dataset: Dataset,
    url: str,
    title: str = "",
    tags: list[str] | None = None,
) -> Added:
    """Queue a URL; the worker fetches it. Refused at once when the refusal is decidable now.
    The same URL again in a dataset is the existing document (its hash is the URL's)."""
    try:
        check_submitted(url)
    except FetchError as exc:
        raise ValidationFailed(
            "The URL cannot be fetched.", details={"url": [f"{exc.code}: {exc.message}"]}
        ) from None
    content_hash = hashlib.sha256(f"url:{url}".encode()).hexdigest()
    fields = {
        "title": (title or url)[:500],
        "source": url,
        "source_type": SourceType.URL,
        "tags": list(tags or []),
    }
    return _create(tenant=tenant, actor=actor, dataset=dataset, content=None,
                   content_hash=content_hash, fields=fields)  # fmt: skip


@transaction.atomic
def document_reingest(*, tenant: Tenant, actor: Actor, document: Document) -> Document:
    """Queue the document again from its stored original. What it was last ingested as stays
    searched until the new run stores its chunks, and stays if that run fails."""
    locked = Document.objects.for_tenant(tenant).select_for_update().filter(pk=document.pk).first()
    if locked is None:  # deleted by another request since it was looked up (a 500 before)
        raise NotFound("Document not found.")
    if locked.status in (DocumentStatus.PROCESSING, DocumentStatus.QUEUED):
        raise Conflict("The document is already queued or being ingested.")
    _queue_again(locked)
    locked.updated_at = timezone.now()
    locked.save(update_fields=[*REQUEUED_FIELDS, "updated_at"])
    _audit(tenant, actor, "document.reingest", locked)
    enqueue_ingest_on_commit(locked.pk)
    return locked

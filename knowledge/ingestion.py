"""The ingestion pipeline: claim → read → parse (sandboxed) → chunk → embed → store.

Work is claimed with a conditional UPDATE (``queued → processing``, attempts + 1), so a message
delivered twice runs once. Network and CPU work happens outside transactions; the chunks are
replaced in one transaction that also marks the document ``ready`` — and only while this run
still holds the claim, so a run the reaper gave up on cannot overwrite a newer one. Never half a
document searchable, never duplicate chunks.

A document's chunks are always the version of it last ingested, and retrieval searches them
whatever the document's status: a reingest (or a record's new content) is found as it was until
its run stores the new chunks, and a run that fails leaves them (``chunk_count``, ``token_count``
and ``ingested_at`` keep describing them; ``status`` and the error describe the run).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from chatbot_site.errors import QuotaExceeded
from knowledge import lease as holders
from knowledge.chunking import ChunkDraft, chunk_blocks
from knowledge.embeddings import EmbeddingError, get_embedder
from knowledge.fetch import FetchError, fetch
from knowledge.injection import detect_passage
from knowledge.models import Chunk, Document, DocumentStatus, SourceType
from knowledge.parsers import HTML, PDF, Limits, ParseError
from knowledge.parsers.sandbox import parse_isolated
from tenants.usage import quota_release, quota_reserve, usage_record

log = structlog.get_logger(__name__)

MESSAGES = {
    "worker_crash": "Ingestion stopped without finishing {attempts}; the document may crash the parser or worker.",
    "missing_file": "The stored file is gone; upload the document again.",
    "embedding_unavailable": "The embedding provider did not answer after {attempts} attempts; reingest to try again.",
}


def _crashed_message() -> str:
    n = settings.INGEST_MAX_ATTEMPTS
    return MESSAGES["worker_crash"].format(attempts="once" if n == 1 else f"{n} times")


class TransientIngestError(Exception):
    """Try again later (provider rate limits, timeouts); the claim has been released.
    ``document_id``: the document that failed, which a fair claim may have made another than the
    run's own; the retry names that one. ``failures``: that document's transient failures so far
    (what the retry's backoff grows with). ``retry_after``: the seconds the provider asked for,
    if it did (the retry waits at least that long)."""

    def __init__(
        self,
        message: str,
        *,
        document_id: uuid.UUID,
        failures: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.document_id = document_id
        self.failures = failures
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles the exception a task ends with; the default (cls(*args)) cannot pass
        # keyword-only arguments, and the worker logged an UnpickleableExceptionWrapper instead.
        rebuild = functools.partial(
            TransientIngestError,
            document_id=self.document_id,
            failures=self.failures,
            retry_after=self.retry_after,
        )
        return rebuild, self.args


# The version of what this pipeline makes of a document: its parsing, text normalisation
# (knowledge.parsers.clean_text), chunking (knowledge.chunking) and embedding input
# (embedding_input). Bump it in the commit that changes what any of them makes of a document
# that was ingested before; each document records the version that made its chunks
# (Document.pipeline_version, 0 before versions were recorded), and `manage.py reingest_stale`
# reingests the ones made by an older version.
# PIPELINE_CHANGES names, for each version, the content types whose chunks it changed (None:
# every type), so that reingest_stale remakes only documents a later version would read
# differently: a Markdown file made by version 1 is as version 2 would make it.
#   1: versions recorded (December 2026).
#   2: PDFs read column after column, a paragraph per text box, words broken at a line's end
#      whole (knowledge.parsers.pdf, 2026-12-07).
#   3: right-to-left PDF text (Arabic, Hebrew) in logical order, its lines made by position
#      and its columns read right to left (knowledge.parsers.bidi, 2026-12-07).
#   4: PDF pages with typesetting ligatures read by their text boxes, not line by line
#      across the page (knowledge.parsers.pdf, 2026-12-07).
#   5: PDF words hyphenated at a line's end joined ("Effects", not "Ef-fects"); compounds keep
#      their hyphen, by the document's own words (knowledge.parsers.pdf, 2026-12-07).
#   6: a PDF's running headers and footers read once, page numbers not at all
#      (knowledge.parsers.pdf, 2026-12-07).
#   7: HTML menus, link lists, share bars, breadcrumbs and cookie banners written as plain
#      div/ul markup not read (knowledge.parsers.boilerplate, 2026-12-08).
#   8: PDF words drawn without a space character between them (TeX) apart by their letters'
#      positions, in pages read line by line and in table cells (knowledge.parsers.pdf,
#      2026-12-08).
PIPELINE_CHANGES: dict[int, frozenset[str] | None] = {
    1: None,
    2: frozenset({PDF}),
    3: frozenset({PDF}),
    4: frozenset({PDF}),
    5: frozenset({PDF}),
    6: frozenset({PDF}),
    7: frozenset({HTML}),
    8: frozenset({PDF}),
}
PIPELINE_VERSION = max(PIPELINE_CHANGES)

CONTEXT_TOKENS = 34


def embedding_input(title: str, draft: ChunkDraft) -> str:
    """A chunk is embedded with the document title and its heading path in front: a passage
    deep in a section still matches questions about that section ("contextual" chunk
    embeddings). The stored (and full-text indexed) text is the chunk alone."""
    text = str(draft.text)
    if title and text.startswith(title):  # records carry their title in the text already
        title = ""
    context = " > ".join(part for part in [title, *draft.heading_path] if part)
    if not context:
        return text
    words = context.split()
    if len(words) > 24:  # keep the context line within CONTEXT_TOKENS, roughly
        context = " ".join(words[:24])
    return f"{context}\n{text}"


def _fail(
    document_id: uuid.UUID,
    claimed_at: Any,
    code: str,
    message: str,
    detail: str = "",
    **changes: Any,
) -> None:
    """Fail the document this run claimed. A document that had been ready (a reingest) keeps
    its earlier chunks, which are still searched: a failed reingest took them with it, and the
    document could not be found again until a run succeeded."""
    updated = _claimed(document_id, claimed_at).update(
        status=DocumentStatus.FAILED,
        error_code=code,
        error_message=message[:2000],
        processing_started_at=None,
        updated_at=timezone.now(),
        **changes,
    )
    if updated:
        # ``detail`` names what a parser library raised: for operators, not for the message.
        extra = {"detail": detail} if detail else {}
        log.warning("document_failed", document_id=str(document_id), code=code, **extra)


# The queued document a run takes: the one of the tenant with the fewest documents being
# ingested now, its own on a tie, then the oldest. Every queued document has a task of its own
# queued with it (upload, reingest, retry, reaper), so every run takes one and none is left
# over; a tenant that queued a thousand documents no longer holds up another's one for as long
# as the thousand take. A deactivated tenant's documents wait, queued, until it is active again
# (the reaper then enqueues them): they were ingested, a paid provider's embeddings too.
_NEXT_QUEUED = """
WITH busy AS (
    SELECT tenant_id, count(*) AS n FROM knowledge_document
    WHERE status = 'processing' GROUP BY tenant_id
)
SELECT d.id FROM knowledge_document d
JOIN tenants_tenant t ON t.id = d.tenant_id AND t.is_active
LEFT JOIN busy ON busy.tenant_id = d.tenant_id
WHERE d.status = 'queued'
ORDER BY coalesce(busy.n, 0), d.id = %(own)s DESC, d.created_at
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"""


def _take_over(document_id: uuid.UUID, now: Any) -> bool:
    """``processing → processing`` for this run: ``document_id``'s document, if the process
    holding it is known to be dead (:mod:`knowledge.lease`) — its worker was killed and the
    task redelivered — instead of ``skipped`` until the lease ran out (12 min)."""
    held = (
        Document.all_tenants.filter(
            pk=document_id, status=DocumentStatus.PROCESSING, tenant__is_active=True
        )
        .values_list("processing_started_at", flat=True)
        .first()
    )
    if held is None or not holders.holder_dead(document_id, held):
        return False
    taken = _claimed(document_id, held).update(
        processing_started_at=now,
        attempts=F("attempts") + 1,
        error_code=None,
        error_message=None,
        updated_at=now,
    )
    if taken:
        log.warning("document_taken_over", document_id=str(document_id))
    return bool(taken)


def claim(document_id: uuid.UUID) -> Document | None:
    """``queued → processing`` for this run: ``document_id``'s document, or another tenant's
    that has waited while ``document_id``'s tenant has more of its documents being ingested
    (:data:`_NEXT_QUEUED`); None when nothing is queued. ``document_id``'s document being
    ingested by a process known to be dead is taken over (:func:`_take_over`)."""
    now = timezone.now()
    if _take_over(document_id, now):
        return _claimed_document(document_id, now)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_NEXT_QUEUED, {"own": document_id})
        row = cursor.fetchone()
        if row is None:
            return None
        Document.all_tenants.filter(pk=row[0]).update(
            status=DocumentStatus.PROCESSING,
            processing_started_at=now,
            attempts=F("attempts") + 1,
            error_code=None,
            error_message=None,
            updated_at=now,
        )
    return _claimed_document(row[0], now)


def _claimed_document(document_id: uuid.UUID, now: Any) -> Document | None:
    document = Document.all_tenants.select_related("dataset", "tenant").get(pk=document_id)
    if document.attempts > settings.INGEST_MAX_ATTEMPTS:
        _fail(document.pk, now, "worker_crash", _crashed_message())
        return None
    holders.record(document.pk, now)
    return document


@contextlib.contextmanager
def _local_copy(document: Document) -> Iterator[Path]:
    """The original as a local file the sandbox can read (storage may be remote)."""
    name = document.file.name if document.file else None
    if not name or not default_storage.exists(name):
        raise ParseError("missing_file", MESSAGES["missing_file"])
    try:
        path = Path(default_storage.path(name))
        yield path
        return
    except NotImplementedError:
        pass
    with tempfile.NamedTemporaryFile(prefix="ingest-") as copy, default_storage.open(name) as src:
        for block in src.chunks():
            copy.write(block)
        copy.flush()
        yield Path(copy.name)


def document_ingest(*, document_id: uuid.UUID) -> str:
    """Run the pipeline for one document; returns the outcome (for logs and tests)."""
    document = claim(document_id)
    if document is None:
        return "skipped"
    claimed_at = document.processing_started_at
    global _reading
    _reading = True
    try:
        return _ingest(document, claimed_at)
    except WorkerStopping:
        return _interrupted(document.pk, claimed_at)
    finally:
        _reading = False
        holders.forget(document.pk)


class WorkerStopping(BaseException):
    """Raised in a run when its worker is stopped gracefully (``SIGTERM`` to a pool child:
    `make run`'s Ctrl-C, `make stop`; :func:`knowledge.tasks._stop_gracefully`). A
    ``BaseException``, as ``KeyboardInterrupt``: no ``except Exception`` on the way swallows it."""


# Whether this process is in a run now (between its claim and its end): what a SIGTERM does.
_reading = False


def reading() -> bool:
    return _reading


def _interrupted(document_id: uuid.UUID, claimed_at: Any) -> str:
    """The worker was stopped gracefully mid-run: the document is queued again at once, and the
    run does not count as an attempt (an operator's three Ctrl-Cs failed a PDF
    ``worker_crash``)."""
    from knowledge.tasks import enqueue_ingest

    if not _release(document_id, claimed_at):
        return "claim_lost"
    enqueue_ingest(document_id)
    log.warning("document_interrupted", document_id=str(document_id))
    return "interrupted"


def _ingest(document: Document, claimed_at: Any) -> str:
    timings: dict[str, int] = {}
    started = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[stage] = round((now - started) * 1000)
        started = now

    structlog.contextvars.bind_contextvars(
        document_id=str(document.pk), tenant_id=str(document.tenant_id)
    )
    embedder = get_embedder()
    try:
        if document.source_type == SourceType.URL:
            _fetch_source(document)
            lap("fetch")
        with _local_copy(document) as path:
            blocks = parse_isolated(
                path,
                document.content_type,
                limits=Limits(),
                memory_bytes=settings.PARSE_MEMORY_BYTES,
                cpu_seconds=settings.PARSE_CPU_SECONDS,
                wall_seconds=settings.PARSE_WALL_SECONDS,
            )
        lap("parse")
        # Room for the context line each chunk is embedded with (see embedding_input).
        size = max(16, min(document.dataset.chunk_size, embedder.max_tokens - CONTEXT_TOKENS))
        overlap = min(document.dataset.chunk_overlap, size // 2)
        drafts = chunk_blocks(blocks, size=size, overlap=overlap, count=embedder.count_tokens)
        lap("chunk")
        _within_token_limit(drafts)
        vectors = _embed_billed(
            document,
            embedder,
            [embedding_input(document.title, d) for d in drafts],
            still_claimed=_claimed(document.pk, claimed_at).filter(tenant__is_active=True).exists,
        )
        lap("embed")
        suspects = [detect_passage(d.text).flagged for d in drafts]
        lap("screen")
    except (ParseError, FetchError) as exc:
        _fail(document.pk, claimed_at, exc.code, exc.message, exc.detail)
        return exc.code
    except QuotaExceeded as exc:
        _fail(document.pk, claimed_at, "quota_exceeded", _quota_message(document, exc))
        return "quota_exceeded"
    except ClaimLost:
        if _release(document.pk, claimed_at):  # still ours: its tenant was deactivated
            log.info("document_paused", document_id=str(document.pk))
            return "paused"
        log.warning("document_claim_lost", document_id=str(document.pk))
        return "claim_lost"
    except SoftTimeLimitExceeded:
        _fail(document.pk, claimed_at, "ingest_timeout",
              f"Ingestion took longer than {settings.INGEST_TASK_SOFT_SECONDS} s.")  # fmt: skip
        return "ingest_timeout"
    except EmbeddingError as exc:
        if exc.transient:
            return _retry_later(document, claimed_at, exc)
        _fail(document.pk, claimed_at, exc.code, str(exc))
        return exc.code
    except Exception:
        return _unexpected(document.pk, claimed_at)

    try:
        stored = _store(document, claimed_at, drafts, vectors, suspects, embedder.model)
    except Exception:
        return _unexpected(document.pk, claimed_at)
    lap("store")
    if not stored:
        log.warning("document_claim_lost", document_id=str(document.pk))
        return "claim_lost"
    Document.all_tenants.filter(pk=document.pk).update(timings=timings)
    log.info("document_ingested", document_id=str(document.pk), chunks=len(drafts),
             ms=sum(timings.values()), **{f"{k}_ms": v for k, v in timings.items()})  # fmt: skip
    return "ready"


def _within_token_limit(drafts: list[ChunkDraft]) -> None:
    """Embedding is the slow stage (a few thousand tokens a second on one core locally) and the
    paid one remotely: a document that would take longer than its run may is refused at once,
    not after holding a worker until ``INGEST_TASK_SOFT_SECONDS``."""
    tokens = sum(draft.token_count for draft in drafts)
    if tokens > settings.INGEST_MAX_TOKENS:
        raise ParseError(
            "too_much_text",
            f"The document is too long to index: {tokens:,} tokens, more than the "
            f"{settings.INGEST_MAX_TOKENS:,} one document may have.",
        )


def _embed_billed(
    document: Document, embedder: Any, texts: list[str], still_claimed: Callable[[], bool]
) -> np.ndarray:
    """:func:`embed_all`, within the tenant's monthly token quota and billed to it. The texts'
    tokens (our count: the local model's own; a provider's may differ a little) must fit in
    what the quota has left, the holds of the turns and documents in progress taken off, or
    nothing is embedded (``quota_exceeded``); they are held until the run ends. The tokens spent
    — the provider's count, or the local tokenizer's, as a question's — are added to the
    tenant's usage (no bot, no key) when the embedding ends, however it ends: a run that
    failed or lost its document part way has spent its first windows' tokens all the same."""
    tenant = document.tenant
    # The quota as it is now, not as it was when the run claimed the document (a parse takes
    # up to PARSE_WALL_SECONDS): a quota raised meanwhile refused the document under the old
    # one, and as it failed after the raise, the re-queue (``requeue_over_quota``: "the tenant
    # changed since it failed") never queued it again.
    tenant.refresh_from_db(fields=["monthly_token_quota", "updated_at"])
    holder = f"document:{document.pk}"
    held = tenant.monthly_token_quota is not None and quota_reserve(
        tenant=tenant,
        holder=holder,
        tokens=sum(embedder.count_tokens(text) for text in texts),
        hold_seconds=settings.INGEST_LEASE_SECONDS,
    )
    spent = 0

    def spend(tokens: int) -> None:
        nonlocal spent
        spent += tokens

    try:
        return embed_all(embedder, texts, still_claimed=still_claimed, spent=spend)
    finally:
        if spent:
            usage_record(tenant=tenant, bot_id=None, api_key_id=None, embedding_tokens=spent,
                         requests=0)  # fmt: skip
        if held:
            quota_release(tenant_id=tenant.pk, holder=holder)


def _quota_message(document: Document, exc: QuotaExceeded) -> str:
    """What a document refused for the quota waits for, and what its owner may do: it said
    "Reingest it once the quota has room", and nothing retried it when the month turned."""
    resets = str(exc.details.get("resets_at", ""))[:10]
    return (
        f"The tenant's monthly token quota has {exc.details.get('left', 0):,} tokens left; "
        f"embedding this document takes {exc.details.get('needed', 0):,}. It is queued again "
        f"by itself once the quota has room: when it resets on {resets} (UTC), or after it is "
        f"raised. To try sooner: POST /v1/documents/{document.pk}/reingest."
    )


EMBED_WINDOW = 256
STORE_BATCH = 500


class ClaimLost(Exception):
    """The run no longer holds its document: deleted, or given to another run, meanwhile."""


def embed_all(
    embedder: Any,
    texts: list[str],
    still_claimed: Callable[[], bool] | None = None,
    spent: Callable[[int], None] | None = None,
) -> np.ndarray:
    """All vectors as one float32 array, embedded ``EMBED_WINDOW`` texts at a time: a Python
    list of floats costs ~32 bytes a dimension, a float32 row 4, and a large document's vectors
    are held until the one replacing transaction. ``still_claimed`` is asked before each window
    after the first: a document deleted while it was embedded went on to its end (42 s of a
    worker for a 20,000-word upload deleted after a second; a paid provider's tokens too).
    ``spent`` is told each window's tokens as it is embedded, and those a window that failed
    part way had spent (``EmbeddingError.spent``)."""
    out = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    for start in range(0, len(texts), EMBED_WINDOW):
        if start and still_claimed is not None and not still_claimed():
            raise ClaimLost
        try:
            window, tokens = embedder.embed_counted(texts[start : start + EMBED_WINDOW])
        except EmbeddingError as exc:
            if spent is not None and exc.spent:
                spent(exc.spent)
            raise
        if spent is not None:
            spent(tokens)
        out[start : start + len(window)] = np.asarray(window, dtype=np.float32)
    return out


def _claimed(document_id: uuid.UUID, claimed_at: Any) -> QuerySet[Document]:
    """The document, if this run (its claim at ``claimed_at``) still holds it."""
    return Document.all_tenants.filter(
        pk=document_id, status=DocumentStatus.PROCESSING, processing_started_at=claimed_at
    )


def _unexpected(document_id: uuid.UUID, claimed_at: Any) -> str:
    """A bug, not the document's fault as far as we know: fail it readably, log the trace."""
    log.exception("document_ingest_crashed", document_id=str(document_id))
    _fail(document_id, claimed_at, "internal_error",
          "Ingestion failed unexpectedly; the error is in the worker's log.")  # fmt: skip
    return "internal_error"


def _fetch_source(document: Document) -> None:
    """Fetch a URL document (again, on every run) and keep the bytes as its original."""
    from django.core.files.base import ContentFile

    from knowledge.parsers.detect import detect_declared

    fetched = fetch(document.source)
    name = urlsplit(fetched.url).path.rsplit("/", 1)[-1]
    # Text is stored as UTF-8, from the charset the server declared (as an upload's).
    content_type, data = detect_declared(fetched.data, name, fetched.charset)
    if content_type is None:
        raise FetchError(
            "unsupported_type", f"The URL serves {fetched.content_type}, not a document."
        )
    old = document.file.name if document.file else None
    document.file.save("original", ContentFile(data), save=False)
    document.content_type = content_type
    document.byte_size = len(data)
    Document.all_tenants.filter(pk=document.pk).update(
        file=document.file.name, content_type=content_type, byte_size=len(data)
    )
    if old and old != document.file.name:
        default_storage.delete(old)


def _retry_later(document: Document, claimed_at: Any, exc: EmbeddingError) -> str:
    """The provider failed this run (after its own tries): give the claim back and raise
    :class:`TransientIngestError` for the task to retry, or, at the document's
    ``INGEST_TRANSIENT_ATTEMPTS``-th such run, fail it ``embedding_unavailable``. Counted on the
    document, not the task: a retry may run another document than the one it names (fair
    claiming), a message may be redelivered or re-enqueued by the reaper, and every such run
    counts against the document it failed — so none is queued forever."""
    failures = document.transient_failures + 1  # this run holds the claim: no other writer
    cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
    if failures >= settings.INGEST_TRANSIENT_ATTEMPTS:
        message = MESSAGES["embedding_unavailable"].format(attempts=failures)
        _fail(document.pk, claimed_at, "embedding_unavailable", message, cause,
              transient_failures=failures)  # fmt: skip
        return "embedding_unavailable"
    if not _release(document.pk, claimed_at, transient_failures=failures):
        log.warning("document_claim_lost", document_id=str(document.pk))
        return "claim_lost"  # the reaper gave it to another run, which retries it
    log.warning("document_retry", document_id=str(document.pk), failures=failures, error=cause)
    raise TransientIngestError(
        str(exc), document_id=document.pk, failures=failures, retry_after=exc.retry_after
    ) from exc


def _release(document_id: uuid.UUID, claimed_at: Any, **changes: Any) -> bool:
    """Give the claim back for a retry; the attempt does not count against the document (as a
    crash: ``attempts``). False if this run no longer held the claim."""
    return bool(
        _claimed(document_id, claimed_at).update(
            status=DocumentStatus.QUEUED,
            processing_started_at=None,
            attempts=F("attempts") - 1,
            updated_at=timezone.now(),
            **changes,
        )
    )


@transaction.atomic
def _store(
    document: Document,
    claimed_at: Any,
    drafts: list[Any],
    vectors: Any,  # one row per draft (float32 array)
    suspects: list[bool],
    model: str,
) -> bool:
    locked = _claimed(document.pk, claimed_at).select_for_update().first()
    if locked is None:
        return False
    # Read under a share lock: a dataset whose language is being changed (which re-indexes its
    # chunks: knowledge.services.dataset_chunks_follow_language) gets these in the new one.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT language::text FROM knowledge_dataset WHERE id = %s FOR SHARE",
            [document.dataset_id],
        )
        (language,) = cursor.fetchone()
    Chunk.all_tenants.filter(document_id=document.pk).delete()
    rows = (
        Chunk(
            tenant_id=document.tenant_id,
            dataset_id=document.dataset_id,
            document_id=document.pk,
            ordinal=ordinal,
            text=draft.text,
            page=draft.page,
            heading_path=draft.heading_path,
            tags=list(locked.tags),  # read under the lock: tags re-sent meanwhile count
            metadata=draft.metadata,
            token_count=draft.token_count,
            char_start=draft.char_start,
            char_end=draft.char_end,
            language=language,
            embedding=vector,
            embedding_model=model,
            injection_suspected=suspect,
        )
        for ordinal, (draft, vector, suspect) in enumerate(
            zip(drafts, vectors, suspects, strict=True)
        )
    )
    # Model instances are built STORE_BATCH at a time, not for the whole document at once.
    while batch := list(itertools.islice(rows, STORE_BATCH)):
        Chunk.all_tenants.bulk_create(batch)
    now = timezone.now()
    locked.status = DocumentStatus.READY
    locked.chunk_count = len(drafts)
    locked.token_count = sum(d.token_count for d in drafts)
    locked.embedding_model = model
    locked.pipeline_version = PIPELINE_VERSION
    locked.indexed_title = document.title  # the title this run read with the text it stores
    locked.ingested_at = now
    locked.processing_started_at = None
    locked.transient_failures = 0
    locked.save(update_fields=["status", "chunk_count", "token_count", "embedding_model",
                               "pipeline_version", "indexed_title", "ingested_at",
                               "processing_started_at", "transient_failures",
                               "updated_at"])  # fmt: skip
    return True


def reap(*, now: Any = None) -> dict[str, int]:
    """Documents whose worker died: requeue (or fail after the last attempt) those processing
    past their lease, and re-enqueue queued ones whose message may have been lost."""
    from knowledge.tasks import enqueue_ingest

    now = now or timezone.now()
    lease = dt.timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    # Past its lease, or held by a process known to be dead (knowledge.lease): its worker was
    # killed, and nothing redelivered its task (or it was another document's).
    dead = Q(pk__in=[])
    for pk, started in Document.all_tenants.filter(
        status=DocumentStatus.PROCESSING, processing_started_at__gte=now - lease
    ).values_list("pk", "processing_started_at"):
        if holders.holder_dead(pk, started):
            dead |= Q(pk=pk, processing_started_at=started)
    stale = Document.all_tenants.filter(status=DocumentStatus.PROCESSING).filter(
        Q(processing_started_at__lt=now - lease) | dead
    )
    # Failed with its earlier chunks kept (still searched), as _fail does.
    failed = stale.filter(attempts__gte=settings.INGEST_MAX_ATTEMPTS).update(
        status=DocumentStatus.FAILED,
        error_code="worker_crash",
        error_message=_crashed_message(),
        processing_started_at=None,
        updated_at=now,
    )
    requeued_ids = list(stale.values_list("pk", flat=True))
    Document.all_tenants.filter(pk__in=requeued_ids, status=DocumentStatus.PROCESSING).update(
        status=DocumentStatus.QUEUED, processing_started_at=None, updated_at=now
    )
    # Queued for longer than a lease with no run: the broker lost the message (a Redis restart),
    # or the tenant was deactivated (its documents wait for it to be active again).
    forgotten = list(
        Document.all_tenants.filter(status=DocumentStatus.QUEUED, updated_at__lt=now - lease)
        .filter(Q(processing_started_at__isnull=True), tenant__is_active=True)
        .values_list("pk", flat=True)[:1000]
    )
    Document.all_tenants.filter(pk__in=forgotten).update(updated_at=now)  # once per lease
    for document_id in [*requeued_ids, *forgotten]:
        enqueue_ingest(document_id)
    if failed or requeued_ids or forgotten:
        log.warning("documents_reaped", failed=failed, requeued=len(requeued_ids),
                    reenqueued=len(forgotten))  # fmt: skip
    return {"failed": failed, "requeued": len(requeued_ids), "reenqueued": len(forgotten)}

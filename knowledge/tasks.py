"""Celery tasks: thin, id-based, idempotent (STYLE.md §6). The work is in knowledge.ingestion."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import structlog
from celery import shared_task
from django.conf import settings
from django.db import transaction

log = structlog.get_logger(__name__)


def enqueue_ingest(document_id: uuid.UUID | str) -> None:
    """Queue the document's ingestion. A broker that cannot take it (Redis down) is logged, not
    raised: the document is stored as ``queued`` already (an upload answered 500 for a document
    that existed), and the reaper queues it again once it has waited ``INGEST_LEASE_SECONDS``."""
    try:
        ingest_document.apply_async((str(document_id),), retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # kombu's OperationalError, redis' ConnectionError, ...
        log.warning("ingest_enqueue_failed", document_id=str(document_id), error=type(exc).__name__)


# A request waits for the publish: two quick tries, not Celery's default three with backoff.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue_ingest_on_commit(document_id: uuid.UUID | str) -> None:
    """Queue the document only once the row that says "queued" is committed."""
    transaction.on_commit(lambda: enqueue_ingest(document_id))


@shared_task(
    bind=True,
    name="knowledge.ingest_document",
    acks_late=True,
    reject_on_worker_lost=True,
    # No limit of the task's own: each retry follows a run the provider failed, which counted
    # against the document it names (Document.transient_failures); at INGEST_TRANSIENT_ATTEMPTS
    # that document fails embedding_unavailable instead of raising, which ends the chain. A
    # limit per task left the document queued, its failure unrecorded, for the reaper to requeue
    # forever (a retry may run another document than its own: fair claiming).
    max_retries=None,
    soft_time_limit=settings.INGEST_TASK_SOFT_SECONDS,
    time_limit=settings.INGEST_TASK_HARD_SECONDS,
    ignore_result=True,
)
def ingest_document(self, document_id: str) -> str:  # type: ignore[no-untyped-def]
    from knowledge.ingestion import TransientIngestError, document_ingest

    try:
        with _given_back_on_sigterm(self.request.is_eager):
            return document_ingest(document_id=uuid.UUID(document_id))
    except TransientIngestError as exc:
        # Exponential backoff with full jitter over the document's failures: 2, 4, 8 ... s,
        # capped at five minutes; never sooner than the provider asked (its Retry-After).
        delay = random.uniform(1, min(300, 2**exc.failures))  # noqa: S311
        delay = max(delay, exc.retry_after or 0.0)
        # For the document that failed, which a fair claim may have made another than ours.
        retried = (str(exc.document_id),)
        raise self.retry(args=retried, exc=exc, countdown=delay) from exc


@contextlib.contextmanager
def _given_back_on_sigterm(eager: bool) -> Iterator[None]:
    """A pool child stopped with ``SIGTERM`` (`make run`'s Ctrl-C and `make stop` send it to
    the worker's whole process group) while it reads a document gives the document back,
    queued again and the run not counted as an attempt (:func:`knowledge.ingestion._interrupted`),
    then stops as before (billiard's handler: the next ``SIGTERM``, or this one outside a read).
    Before, the child died at once: the document stayed ``processing`` until its lease, and
    three Ctrl-Cs failed it ``worker_crash``."""
    if eager or threading.current_thread() is not threading.main_thread():
        yield
        return
    from knowledge.ingestion import WorkerStopping, reading

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        if reading():
            # A second SIGTERM (the pool stopping) waits until the document is given back.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            log.warning("worker_stopping_mid_document")
            raise WorkerStopping
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Both limits: a task's own time_limit below the global soft limit (CELERY_TASK_SOFT_TIME_LIMIT)
# makes every send fail ("soft_time_limit must be less than or equal to time_limit").
@shared_task(
    name="knowledge.reap_documents", ignore_result=True, soft_time_limit=100, time_limit=120
)
def reap_documents() -> dict[str, int]:
    from knowledge.ingestion import reap

    return reap()


@shared_task(
    name="knowledge.requeue_over_quota", ignore_result=True, soft_time_limit=100, time_limit=120
)
def requeue_over_quota(tenant_id: str | None = None, actor: dict | None = None) -> int:
    """Celery beat's sweep (every tenant) or, sent by name on the commit of a quota raised in
    the staff admin, one tenant's (``tenants.services.tenant_quota_changed``), with the staff
    user who raised it as ``actor`` (``tenants.services.actor_as_dict``)."""
    from knowledge.intake import requeue_over_quota as requeue
    from tenants.services import actor_from_dict

    return requeue(
        tenant_id=uuid.UUID(tenant_id) if tenant_id else None,
        actor=actor_from_dict(actor) if actor else None,
    )


# Builds a large dataset's own index concurrently: minutes on a large table, so its own limits.
@shared_task(
    name="knowledge.maintain_vector_indexes",
    ignore_result=True,
    soft_time_limit=3300,
    time_limit=3600,
)
def maintain_vector_indexes() -> dict:
    from knowledge.vector_index import maintain

    return maintain()


@shared_task(
    name="knowledge.sweep_orphan_files", ignore_result=True, soft_time_limit=1700, time_limit=1800
)
def sweep_orphan_files() -> dict[str, int]:
    from knowledge.storage_sweep import sweep_orphan_files as sweep

    return sweep()

"""Who holds a document being ingested, and whether that holder is dead.

A run's claim (``status = processing`` at ``processing_started_at``) is a lease of
``INGEST_LEASE_SECONDS``: no other run reads the document meanwhile. The process that claimed
it is recorded in Redis next to the claim (its host, pid and the pid's start time, and the
Celery worker it belongs to), so that a run whose process is known to be gone does not hold the
document until the lease ends: a redelivered task takes the document over at once
(:func:`knowledge.ingestion.claim`), and the reaper queues it again
(:func:`knowledge.ingestion.reap`). Before, the document said ``processing`` for 12 min after
its worker was killed (the redelivered task was ``skipped``).

A holder is dead when, on this host, its pid is gone or is another process now (its start time
differs: a restarted container reuses pids), or, on another host, when its worker's heartbeat
(:data:`chatbot_site.celery.HEARTBEAT_KEY`) is older than ``WORKER_HEARTBEAT_MAX_AGE_SECONDS``.
Anything not known — no record (Redis was down or lost it), a heartbeat never seen, Redis not
answering — is not dead: the lease holds as before. A slow holder that is alive keeps it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from typing import Any

import structlog
from django.conf import settings

from chatbot_site.embedded import process_stat

log = structlog.get_logger(__name__)

KEY = "chatbot:ingest-holder:{}"


def _start_time(pid: int) -> str | None:
    """The process' start time (clock ticks since boot, /proc/PID/stat field 22); None when
    there is no such process or no /proc."""
    fields = process_stat(pid)
    return fields[19] if len(fields) > 19 else None


def _claim_key(claimed_at: dt.datetime) -> str:
    return claimed_at.astimezone(dt.UTC).isoformat()


def record(document_id: uuid.UUID, claimed_at: dt.datetime) -> None:
    """Record this process as the holder of the claim ``claimed_at`` of the document."""
    from chatbot_site.celery import _heartbeat
    from chatbot_site.redis import get_redis

    holder = {
        "claim": _claim_key(claimed_at),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": _start_time(os.getpid()),
        "worker": _heartbeat.name,
    }
    try:
        get_redis().set(
            KEY.format(document_id), json.dumps(holder), ex=settings.INGEST_LEASE_SECONDS
        )
    except Exception as exc:  # Redis down: the lease alone holds the document, as before
        log.warning("ingest_holder_unrecorded", document_id=str(document_id),
                    error=type(exc).__name__)  # fmt: skip


def forget(document_id: uuid.UUID) -> None:
    from chatbot_site.redis import get_redis

    try:
        get_redis().delete(KEY.format(document_id))
    except Exception:  # it expires with the lease
        log.warning("ingest_holder_unforgotten", document_id=str(document_id))


def _process_gone(pid: int, start: str | None) -> bool:
    fields = process_stat(pid)
    if fields:  # a zombie is gone; a pid with another start time is another process
        return fields[0] == "Z" or (start is not None and fields[19] != start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _heartbeat_stale(worker: str) -> bool:
    from chatbot_site.celery import HEARTBEAT_KEY
    from chatbot_site.redis import get_redis

    score = get_redis().zscore(HEARTBEAT_KEY, worker)
    if score is None:  # never seen, or unregistered: not known to be dead
        return False
    return time.time() - float(score) > settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS


def holder_dead(document_id: uuid.UUID, claimed_at: dt.datetime | None) -> bool:
    """Whether the process holding the claim ``claimed_at`` of the document is known to be gone
    (see the module's docstring); False when not known."""
    from chatbot_site.redis import get_redis

    if claimed_at is None:
        return False
    try:
        raw = get_redis().get(KEY.format(document_id))
        if raw is None:
            return False
        holder: dict[str, Any] = json.loads(raw)
        if holder.get("claim") != _claim_key(claimed_at):
            return False
        if holder.get("host") == socket.gethostname():
            return _process_gone(int(holder["pid"]), holder.get("start"))
        return _heartbeat_stale(str(holder.get("worker", "")))
    except Exception as exc:  # Redis not answering, a record we cannot read: not known
        log.warning("ingest_holder_unknown", document_id=str(document_id),
                    error=type(exc).__name__)  # fmt: skip
        return False

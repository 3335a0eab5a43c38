"""``GET /v1/health``: database round trip + pgvector version in one query, Redis PING and
the newest worker heartbeat — three cheap reads, safe to poll every second."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import structlog
from django.conf import settings
from django.db import connection
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from psycopg_pool import PoolTimeout
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

import chatbot_site
from chatbot_site.celery import HEARTBEAT_KEY, POOL_HEARTBEAT_KEY
from chatbot_site.errors import error_body, mark_logged, request_id_of
from chatbot_site.options import AllowOptions
from chatbot_site.pgconnection import FailureLog, outage
from chatbot_site.redis import get_redis

log = structlog.get_logger(__name__)

# Probes that fail one after another are one failure in the log: ``health_database_failed``
# (ERROR, with its cause) when the first fails, at most one ``health_database_failing`` every
# DB_OUTAGE_LOG_SECONDS, ``health_database_recovered`` when one answers again. A balancer
# polling every second wrote an ERROR line a second for as long as the database was gone.
failures = FailureLog(
    log,
    started="health_database_failed",
    continues="health_database_failing",
    ended="health_database_recovered",
    counted="failed",
)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _pg_vector_version() -> tuple[Any, ...] | None:
    """One round trip, on a pooled connection if one is free within ``HEALTH_POOL_WAIT_SECONDS``
    and otherwise on a connection of its own: with the database down, the pool would keep every
    probe waiting its full ``DB_POOL_TIMEOUT`` while it reconnects in the background, and a probe
    that times out tells an orchestrator less than a prompt 503 does. A pool busy with requests
    does not fail the probe (the database still answers a direct connection)."""
    pool = getattr(connection, "pool", None)  # the psycopg backend's; None without DB_POOL
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute(_PGVECTOR_VERSION)
            return cursor.fetchone()
    pool.open()
    try:
        pooled = pool.getconn(timeout=settings.HEALTH_POOL_WAIT_SECONDS)
    except PoolTimeout:
        # Of the pool's class: its wait for the answer is bounded as the pool's are.
        with pool.connection_class.connect(**connection.get_connection_params()) as direct:
            return direct.execute(_PGVECTOR_VERSION).fetchone()
    try:
        return pooled.execute(_PGVECTOR_VERSION).fetchone()
    finally:
        pool.putconn(pooled)  # a broken connection is discarded, not handed out again


_PGVECTOR_VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"


def _probe_database() -> tuple[Any, ...] | None:
    try:
        return _pg_vector_version()
    except Exception:
        # A broken connection must not be reused (by this thread's next probe).
        connection.close_if_unusable_or_obsolete()
        raise


# The database is asked on a thread of its own, one probe at a time, and waited for at most
# HEALTH_DATABASE_TIMEOUT_SECONDS: a server that accepts and then never answers (stopped,
# partitioned behind a TCP connection the kernel keeps open) held every probe, and the thread
# that served it, for as long as it did not answer — over 200 s measured, with no answer at all.
# While a probe is still waiting, the next ones answer "error" at once instead of piling up.
_prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-database")
_pending: Future[tuple[Any, ...] | None] | None = None
_pending_lock = threading.Lock()


class ProbeTimeout(Exception):
    pass


def _bounded_probe() -> tuple[Any, ...] | None:
    global _pending
    with _pending_lock:
        if _pending is not None and not _pending.done():
            raise ProbeTimeout("the previous probe has not returned")
        _pending = probe = _prober.submit(_probe_database)
    try:
        return probe.result(timeout=settings.HEALTH_DATABASE_TIMEOUT_SECONDS)
    except FutureTimeout:
        raise ProbeTimeout("no answer in time") from None


def check_database() -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.perf_counter()
    try:
        row = _bounded_probe()
    except Exception as exc:
        # Within a known outage, counted in its lines (they name the cause); else in health's.
        if not outage.absorbs():
            failures.failed(exc, counted=True)
        failed = {"status": "error", "error": "database unavailable"}
        return failed, {"status": "unknown"}
    failures.ended()
    database = {"status": "ok", "latency_ms": _ms(started)}
    if row is None:
        return database, {"status": "error", "error": "extension not installed"}
    return database, {"status": "ok", "version": row[0]}


def check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        get_redis().ping()
    except Exception as exc:
        log.warning("health_redis_failed", error=type(exc).__name__)
        return {"status": "error", "error": "redis unavailable"}
    return {"status": "ok", "latency_ms": _ms(started)}


def check_worker(redis_ok: bool) -> dict[str, Any]:
    """Alive workers: the main process's heartbeat is fresh, and so is each of its pool
    processes' own (``chatbot_site.celery._PoolHeartbeat``). A pool process that stopped beating
    (frozen with ``SIGSTOP``, stuck in C code that holds the GIL) makes the check ``error``,
    counted in ``stalled_pool_processes``: its task goes nowhere, and with no other pool process
    the worker takes no work, while its main process beats on."""
    if not redis_ok:
        return {"status": "unknown", "error": "redis unavailable"}
    try:
        client = get_redis()
        beats: list[tuple[bytes, float]] = client.zrevrange(  # type: ignore[assignment]
            HEARTBEAT_KEY, 0, -1, withscores=True
        )
        now = time.time()
        max_age = settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS
        alive = [(name, score) for name, score in beats if now - score <= max_age]
        pipe = client.pipeline()
        for name, _score in alive:
            pipe.hvals(POOL_HEARTBEAT_KEY.format(name.decode()))
        pools: list[list[bytes]] = pipe.execute() if alive else []
    except Exception:
        return {"status": "unknown", "error": "redis unavailable"}
    if not alive:
        last = round(now - beats[0][1], 1) if beats else None
        return {"status": "error", "error": "no worker heartbeat", "last_seen_seconds_ago": last}
    stalled = [sum(now - float(at) > max_age for at in pool) for pool in pools]
    check: dict[str, Any] = {
        "status": "ok",
        "workers": stalled.count(0),
        "last_seen_seconds_ago": round(now - max(score for _name, score in alive), 1),
    }
    if any(stalled):
        check["status"] = "error"
        check["error"] = "worker pool process not responding"
        check["stalled_pool_processes"] = sum(stalled)
    return check


class CheckOutput(serializers.Serializer):
    """One check: its status, and what it measured or why it failed (the schema listed the
    status alone, so a client generated from it dropped the rest)."""

    status = serializers.ChoiceField(choices=["ok", "error", "unknown"])
    error = serializers.CharField(required=False, help_text="Why it is not ok.")
    latency_ms = serializers.FloatField(required=False, help_text="database, redis")
    version = serializers.CharField(required=False, help_text="pgvector's")
    workers = serializers.IntegerField(
        required=False, help_text="worker: alive workers whose every pool process answers"
    )
    stalled_pool_processes = serializers.IntegerField(
        required=False,
        help_text="worker: pool processes of alive workers whose own heartbeat stopped (frozen, "
        "or stuck holding the interpreter); present when not 0, and the check is then error",
    )
    last_seen_seconds_ago = serializers.FloatField(
        required=False, allow_null=True, help_text="worker: its last heartbeat; null: never"
    )


class ChecksOutput(serializers.Serializer):
    database = CheckOutput()
    pgvector = CheckOutput()
    redis = CheckOutput()
    worker = CheckOutput()


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "error"])
    version = serializers.CharField()
    checks = ChecksOutput()


@extend_schema_field({"$ref": "#/components/schemas/ErrorDetail"})
class ErrorDetailField(serializers.JSONField):
    """The error envelope's object (``chatbot_site.schema``'s ``ErrorDetail`` component)."""


class HealthDownOutput(HealthOutput):
    """The ``503``: the checks, and the envelope every non-2xx answer carries."""

    error = ErrorDetailField()


# The 503's envelope: every non-2xx answer carries one (API.md), a probe's too.
DATABASE_DOWN = "The database does not answer."
RETRY_AFTER_SECONDS = "5"


class HealthApi(AllowOptions):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        auth=[],
        responses={
            200: HealthOutput,
            503: OpenApiResponse(
                HealthDownOutput,
                description="The database does not answer: the checks, with the error "
                "envelope's `error` (`service_unavailable`) and `Retry-After`.",
            ),
        },
        tags=["operations"],
        examples=[
            OpenApiExample(
                "healthy",
                value={
                    "status": "ok",
                    "version": "0.1.0",
                    "checks": {
                        "database": {"status": "ok", "latency_ms": 0.6},
                        "pgvector": {"status": "ok", "version": "0.8.6"},
                        "redis": {"status": "ok", "latency_ms": 0.2},
                        "worker": {"status": "ok", "workers": 1, "last_seen_seconds_ago": 3.1},
                    },
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        database, pgvector = check_database()
        redis_check = check_redis()
        worker = check_worker(redis_check["status"] == "ok")
        checks = {
            "database": database,
            "pgvector": pgvector,
            "redis": redis_check,
            "worker": worker,
        }
        if database["status"] != "ok":
            status = "error"
        elif all(check["status"] == "ok" for check in checks.values()):
            status = "ok"
        else:
            status = "degraded"
        body = {"status": status, "version": chatbot_site.__version__, "checks": checks}
        if database["status"] != "ok":
            # A monitor reads status and checks; a client reads every non-2xx answer as the
            # error envelope (API.md): the 503 is both, with Retry-After as the API's other
            # 503s. (It was the checks alone: no `error`, no Retry-After.)
            down = error_body(
                "service_unavailable", DATABASE_DOWN, request_id=request_id_of(request)
            )
            response = Response({**body, **down}, status=503)
            response["Retry-After"] = RETRY_AFTER_SECONDS
            mark_logged(response)  # health_database_failed said why
        else:
            response = Response(body)
        response["Cache-Control"] = "no-store"
        return response

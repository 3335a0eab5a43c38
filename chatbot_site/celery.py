"""The Celery app (`celery -A chatbot_site worker`).

Also: request-id propagation (the id of the HTTP request that queued a task is carried in the
message headers and bound into the task's log lines, with the task id) and a worker heartbeat
in Redis that ``GET /v1/health`` reads without talking to the worker.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import structlog
from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.production")

app = Celery("chatbot_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = structlog.get_logger("chatbot.worker")

HEARTBEAT_KEY = "chatbot:worker-heartbeats"
REQUEST_ID_HEADER = "chatbot_request_id"


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if headers is not None and request_id:
        headers[REQUEST_ID_HEADER] = request_id


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task else None
    if request_id is None and task is not None:
        request_id = (task.request.headers or {}).get(REQUEST_ID_HEADER)
    structlog.contextvars.bind_contextvars(task_id=task_id, request_id=request_id)


@signals.task_postrun.connect
def _unbind_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@signals.setup_logging.connect
def _keep_django_logging(**_: Any) -> None:
    """Connecting here stops Celery from replacing the structlog handlers Django set up."""


@signals.celeryd_init.connect
def _log_before_the_worker_speaks(instance: Any = None, **_: Any) -> None:
    """Django's logging from the worker's first word, not from ``django.setup()`` a moment
    later: what Celery warns at start (running as root: a ``SecurityWarning``) went to stderr as
    eight lines of text. With ``LOG_FORMAT=json`` the text banner (22 lines on stdout) is not
    printed either: every line the worker writes is one JSON object, and the banner's facts are
    logged as ``worker_starting``."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    if settings.LOG_FORMAT == "json" and instance is not None:
        instance.quiet = True


@signals.celeryd_after_setup.connect
def _log_worker_starting(sender: str = "", instance: Any = None, **_: Any) -> None:
    queues = sorted(instance.app.amqp.queues) if instance is not None else []
    log.info(
        "worker_starting",
        node=sender,
        concurrency=getattr(instance, "concurrency", None),
        queues=queues,
    )


class _Heartbeat:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self) -> None:
        from django.conf import settings

        from chatbot_site.redis import get_redis

        interval = float(settings.CELERY_WORKER_HEARTBEAT_SECONDS)
        keep = float(settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS) * 10
        while not self.stop.is_set():
            try:
                client = get_redis()
                now = time.time()
                pipe = client.pipeline()
                pipe.zadd(HEARTBEAT_KEY, {self.name: now})
                pipe.zremrangebyscore(HEARTBEAT_KEY, "-inf", now - keep)
                pipe.execute()
            except Exception as exc:  # Redis down: keep trying; health will say so meanwhile
                # The error's name, not its traceback: with Redis down this line comes every
                # ``interval`` (a 2.9 kB traceback every 10 s, and Redis' own failure is known).
                log.warning("worker_heartbeat_failed", error=type(exc).__name__)
            self.stop.wait(interval)


_heartbeat = _Heartbeat()


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    threading.Thread(target=_heartbeat.run, name="worker-heartbeat", daemon=True).start()
    log.info("worker_ready", worker=_heartbeat.name)
    _quiet_sigterm(getattr(sender, "controller", None))


def _quiet_sigterm(worker: Any) -> None:
    """With ``LOG_FORMAT=json``, the SIGTERM an orchestrator stops the worker with is handled
    as Celery handles it, without the text line Celery writes to stdout in its signal handler
    ("worker: Warm shutdown (MainProcess)"); ``worker_stopping`` is logged instead. (Ctrl-C at
    a terminal keeps Celery's words.)"""
    from celery.apps.worker import install_worker_term_handler  # type: ignore[attr-defined]
    from django.conf import settings

    if settings.LOG_FORMAT == "json" and worker is not None:
        install_worker_term_handler(worker, verbose=False)


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    from chatbot_site.redis import get_redis

    _heartbeat.stop.set()
    log.info("worker_stopping", worker=_heartbeat.name)
    try:
        get_redis().zrem(HEARTBEAT_KEY, _heartbeat.name)
    except Exception:
        log.warning("worker_heartbeat_unregister_failed", exc_info=True)

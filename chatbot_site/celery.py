"""The Celery app (`celery -A chatbot_site worker`).

Also: request-id propagation (the id of the HTTP request that queued a task is carried in the
message headers and bound into the task's log lines, with the task id) and a worker heartbeat
in Redis that ``GET /v1/health`` reads without talking to the worker.
"""

from __future__ import annotations

import contextlib
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
# Each pool process's own heartbeat, a hash per worker (its HEARTBEAT_KEY name): pid -> time.
POOL_HEARTBEAT_KEY = "chatbot:worker-pool:{}"
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
                pipe.expire(POOL_HEARTBEAT_KEY.format(self.name), int(keep))
                pipe.execute()
                self.forget_gone_pool_processes(client)
            except Exception as exc:  # Redis down: keep trying; health will say so meanwhile
                # The error's name, not its traceback: with Redis down this line comes every
                # ``interval`` (a 2.9 kB traceback every 10 s, and Redis' own failure is known).
                log.warning("worker_heartbeat_failed", error=type(exc).__name__)
            self.stop.wait(interval)

    def forget_gone_pool_processes(self, client: Any) -> None:
        """A pool process that is gone (killed at its task's hard limit, by the OOM killer)
        could not unregister its heartbeat: the main process drops it, so that only the pool
        it has now is judged. A stopped one (``SIGSTOP``) is still there and stays."""
        from chatbot_site.embedded import process_stat

        key = POOL_HEARTBEAT_KEY.format(self.name)
        pids = [int(pid) for pid in client.hkeys(key)]
        gone = [pid for pid in pids if process_stat(pid)[:1] in ([], ["Z"])]
        if gone:
            client.hdel(key, *gone)


_heartbeat = _Heartbeat()


class _PoolHeartbeat:
    """A prefork pool process's own heartbeat (``POOL_HEARTBEAT_KEY``), from a thread of its
    own: it stops when the process does not run — stopped (``SIGSTOP``), or stuck in C code
    that holds the GIL — while the main process's goes on. ``GET /v1/health`` reads both: a
    worker whose pool does not beat cannot take work. Before, health said ``worker: ok`` while
    the only pool process was frozen and uploads stayed ``processing`` and ``queued``."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def beat(self) -> None:
        from chatbot_site.redis import get_redis

        get_redis().hset(POOL_HEARTBEAT_KEY.format(_heartbeat.name), str(os.getpid()), time.time())

    def run(self) -> None:
        from django.conf import settings

        interval = float(settings.CELERY_WORKER_HEARTBEAT_SECONDS)
        while not self.stop.wait(interval):
            try:
                self.beat()
            except Exception as exc:  # Redis down: health says so meanwhile
                log.warning("worker_pool_heartbeat_failed", error=type(exc).__name__)

    def unregister(self) -> None:
        from chatbot_site.redis import get_redis

        self.stop.set()
        with contextlib.suppress(Exception):
            get_redis().hdel(POOL_HEARTBEAT_KEY.format(_heartbeat.name), str(os.getpid()))


_pool_heartbeat = _PoolHeartbeat()


@signals.worker_process_init.connect
def _start_pool_heartbeat(**_: Any) -> None:
    # In the new pool process: the parent's thread did not survive the fork.
    _pool_heartbeat.stop = threading.Event()
    try:
        _pool_heartbeat.beat()
    except Exception as exc:  # the thread tries again
        log.warning("worker_pool_heartbeat_failed", error=type(exc).__name__)
    threading.Thread(target=_pool_heartbeat.run, name="worker-pool-heartbeat", daemon=True).start()


@signals.worker_process_shutdown.connect
def _stop_pool_heartbeat(**_: Any) -> None:
    _pool_heartbeat.unregister()


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
        pipe = get_redis().pipeline()
        pipe.zrem(HEARTBEAT_KEY, _heartbeat.name)
        pipe.delete(POOL_HEARTBEAT_KEY.format(_heartbeat.name))
        pipe.execute()
    except Exception:
        log.warning("worker_heartbeat_unregister_failed", exc_info=True)

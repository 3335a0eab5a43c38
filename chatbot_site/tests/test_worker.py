from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path

import pytest
import structlog

from chatbot_site.embedded import process_stat
from chatbot_site.health import check_worker
from chatbot_site.tasks import ping
from tests.processes import celery_worker, child_env, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_a_real_worker_heartbeats_runs_tasks_with_the_request_id_and_leaves(tmp_path, redis_client):
    log = tmp_path / "worker.log"
    with celery_worker(child_env(LOG_LEVEL="INFO", LOG_FORMAT="json"), log) as proc:
        try:
            wait_for(lambda: check_worker(True)["status"] == "ok", timeout=60, what="heartbeat")
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert check_worker(True)["workers"] == 1

        # Enqueued during a request: the task's context (and log lines) carry that request's id.
        reply_key = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id="req-from-api")
        try:
            sent = ping.delay(reply_key)
        finally:
            structlog.contextvars.clear_contextvars()
        raw = wait_for(
            lambda: redis_client.get(f"chatbot:ping:{reply_key}"), timeout=30, what="ping reply"
        )
        reply = json.loads(raw)
        assert reply["request_id"] == "req-from-api"
        assert reply["task_id"] == sent.id

        proc.terminate()
        proc.wait(timeout=30)
    assert check_worker(True)["status"] == "error"

    text = log.read_text().splitlines()
    lines = [json.loads(line) for line in text if line.startswith("{")]
    # Every line the worker writes, start to stop, is one JSON object: Celery's text banner,
    # its warning when run as root and its "Warm shutdown" line were 31 lines of text.
    assert [line for line in text if not line.startswith("{")] == []
    events = {line["event"]: line for line in lines}
    assert "worker_ready" in events, "the worker logs through structlog as JSON"
    assert events["worker_starting"]["concurrency"] == 1
    assert "worker_stopping" in events
    assert events["worker_ping"]["request_id"] == "req-from-api"
    assert events["worker_ping"]["task_id"] == sent.id


def test_every_task_can_be_sent_with_the_configured_time_limits():
    """Celery refuses to send a task whose soft limit (its own, else the global one) exceeds its
    hard limit: a task setting only ``time_limit`` below CELERY_TASK_SOFT_TIME_LIMIT can never
    run (the document reaper could not, until 2026-11-25)."""
    from chatbot_site.celery import app

    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert {"knowledge.ingest_document", "knowledge.reap_documents"} <= set(ours)
    for name, task in ours.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert not (soft and hard and soft > hard), (name, soft, hard)


def test_a_heartbeat_redis_refuses_is_one_short_line_not_a_traceback(settings, tmp_path, caplog):
    """With Redis down the heartbeat fails every interval: each failure logged a 2.9 kB
    traceback (seen with make run: 58 of them in ten minutes)."""
    from chatbot_site.celery import _Heartbeat
    from chatbot_site.redis import get_redis

    settings.REDIS_URL = f"unix://{tmp_path}/nothing-listens-here.sock?db=0"
    settings.CELERY_WORKER_HEARTBEAT_SECONDS = 0.05
    get_redis.cache_clear()
    heartbeat = _Heartbeat()
    try:
        with caplog.at_level(logging.WARNING, logger="chatbot.worker"):
            runner = threading.Thread(target=heartbeat.run)
            runner.start()
            wait_for(
                lambda: any(r.msg.get("event") == "worker_heartbeat_failed" for r in
                            caplog.records if isinstance(r.msg, dict)),
                timeout=10,
                what="a failed heartbeat",
            )  # fmt: skip
            heartbeat.stop.set()
            runner.join(timeout=10)
    finally:
        get_redis.cache_clear()
    failed = [r for r in caplog.records if isinstance(r.msg, dict)]
    assert failed and all(r.exc_info is None and "exc_info" not in r.msg for r in failed)
    assert failed[0].msg["error"] == "ConnectionError"


def test_a_frozen_pool_process_makes_the_worker_check_fail_until_it_runs_again(
    tmp_path, redis_client, settings, api_client
):
    """The main process beats on while its only pool process is stopped (``SIGSTOP``, or stuck
    in C code holding the GIL): health said ``worker: ok`` while uploads stayed ``queued``.
    Each pool process now beats from a thread of its own; health reads both."""
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 3.0
    env = child_env(WORKER_HEARTBEAT_SECONDS="0.5", WORKER_HEARTBEAT_MAX_AGE="3")
    log = tmp_path / "worker.log"
    with celery_worker(env, log) as proc:

        def pool_pids() -> list[int]:
            """The worker's pool processes: its running children (the parser zygote is a child
            of a pool process)."""
            pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
            return [
                pid
                for pid in pids
                if (fields := process_stat(pid))[1:2] == [str(proc.pid)] and fields[0] != "Z"
            ]

        try:
            wait_for(lambda: check_worker(True)["status"] == "ok" and pool_pids(), timeout=60,
                     what="the worker and its pool process")  # fmt: skip
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        [child] = pool_pids()
        assert child != proc.pid
        os.kill(child, signal.SIGSTOP)
        try:
            worker = wait_for(
                lambda: (check := check_worker(True))["status"] == "error" and check,
                timeout=60,
                what="the worker check to see the frozen pool process",
            )
            assert worker == {
                "status": "error",
                "error": "worker pool process not responding",
                "workers": 0,
                "stalled_pool_processes": 1,
                "last_seen_seconds_ago": worker["last_seen_seconds_ago"],
            }
            # Its main process still beats: the heartbeat alone said ok.
            assert worker["last_seen_seconds_ago"] <= 3.0
            body = api_client.get("/v1/health").json()
            assert body["status"] == "degraded"
            assert body["checks"]["worker"]["status"] == "error"
        finally:
            os.kill(child, signal.SIGCONT)
        wait_for(lambda: check_worker(True)["status"] == "ok", timeout=60, what="ok again")

        # A pool process killed (a hard time limit, the OOM killer) cannot unregister: its main
        # process forgets it, and its replacement beats.
        os.kill(child, signal.SIGKILL)
        from chatbot_site.celery import POOL_HEARTBEAT_KEY

        pool_key = POOL_HEARTBEAT_KEY.format(f"{socket.gethostname()}:{proc.pid}")
        wait_for(lambda: str(child).encode() not in redis_client.hkeys(pool_key)
                 and len(redis_client.hkeys(pool_key)) == 1, timeout=60,
                 what="the killed pool process forgotten, its replacement beating")  # fmt: skip
        wait_for(lambda: check_worker(True)["status"] == "ok", timeout=60, what="ok after")
        assert check_worker(True)["workers"] == 1

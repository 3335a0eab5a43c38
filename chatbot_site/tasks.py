"""Operational tasks. ``ping`` proves the whole queue path end to end: a producer enqueues it,
a worker runs it and leaves its reply (with the ids its log lines carried) in Redis."""

from __future__ import annotations

import json
import socket

import structlog
from celery import shared_task

log = structlog.get_logger(__name__)

PING_TTL_SECONDS = 300


@shared_task(
    name="chatbot_site.ping", acks_late=True, ignore_result=True, time_limit=30, soft_time_limit=25
)
def ping(reply_key: str) -> None:
    from chatbot_site.redis import get_redis

    context = structlog.contextvars.get_contextvars()
    reply = {
        "worker": socket.gethostname(),
        "task_id": context.get("task_id"),
        "request_id": context.get("request_id"),
    }
    log.info("worker_ping")
    get_redis().set(f"chatbot:ping:{reply_key}", json.dumps(reply), ex=PING_TTL_SECONDS)

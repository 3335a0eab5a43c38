"""Calling sync code (the ORM, the embedding model) from async views without blocking the
event loop and without funnelling every request through one thread."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the worker pool (:func:`pool`). Each pool thread keeps its own
    database connection (Django's are per thread); ``close_old_connections`` before and after
    gives it the ``CONN_MAX_AGE`` / ``CONN_HEALTH_CHECKS`` treatment a request thread gets."""

    def call() -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False, executor=pool())()


@functools.cache
def pool() -> ThreadPoolExecutor:
    """The process's ``CHAT_WORKER_THREADS`` threads (not the event loop's default pool, sized
    for I/O: CPU-bound hops in more threads than CPUs only queue for the GIL)."""
    return ThreadPoolExecutor(max_workers=settings.CHAT_WORKER_THREADS, thread_name_prefix="sync")

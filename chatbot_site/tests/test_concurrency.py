"""run_sync: sync work from async views runs in the process's worker pool, at most
CHAT_WORKER_THREADS at once, each call with its own database connection."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.conf import settings

from chatbot_site.concurrency import pool, run_sync


def test_sync_work_runs_in_the_worker_pool_at_most_chat_worker_threads_at_once():
    running = 0
    most = 0
    names: set[str] = set()
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def many() -> None:
        await asyncio.gather(*(run_sync(work) for _ in range(settings.CHAT_WORKER_THREADS * 3)))

    asyncio.run(many())
    assert most <= settings.CHAT_WORKER_THREADS == pool()._max_workers
    assert all(name.startswith("sync") for name in names)


@pytest.mark.django_db(transaction=True)
def test_each_call_uses_the_database_and_returns_its_result():
    from tenants.models import Tenant

    async def count() -> int:
        return await run_sync(lambda: Tenant.objects.count())

    assert asyncio.run(count()) == Tenant.objects.count()

"""Django's ``migrate``, one at a time per database.

Two processes that start together (two containers, an orchestrator's init jobs, ``make run``
twice) both ran every migration: on a fresh database the second failed (``column "name" of
relation "django_content_type" does not exist``: the first had applied contenttypes 0002 after
the second had read the plan), and the first container that failed stopped the deployment.
Now each ``migrate`` takes a PostgreSQL advisory lock on a connection of its own before it reads
the plan; a second waits for it and then finds nothing left to apply.

The lock is waited for by trying it every :data:`POLL_SECONDS`, not by ``pg_advisory_lock``: a
statement blocked in that call holds a snapshot for as long as it waits, and the first
``migrate``'s ``CREATE INDEX CONCURRENTLY`` (knowledge 0009, 0014) waits for every older
snapshot to end — each would have waited for the other, undetected by PostgreSQL. The holding
connection sits idle in autocommit, with no snapshot, and is closed (the lock with it) when the
command ends, or its process dies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import structlog
from django.core.management.commands import migrate
from django.db import connections

log = structlog.get_logger(__name__)

MIGRATE_LOCK = 0x6D696772  # pg advisory lock ("migr"), per database: one migrate at a time
POLL_SECONDS = 0.5


@contextlib.contextmanager
def migrate_lock(database: str) -> Iterator[None]:
    """Hold the database's migrate lock, waiting for another ``migrate`` that holds it."""
    params = connections[database].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as holder:
        started = time.monotonic()
        waiting = False
        while not holder.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK]).fetchone()[0]:  # type: ignore[index]
            if not waiting:
                log.info("migrate_waiting", database=database)
                waiting = True
            time.sleep(POLL_SECONDS)
        if waiting:
            log.info("migrate_lock_acquired", database=database,
                     waited_s=round(time.monotonic() - started, 1))  # fmt: skip
        try:
            yield
        finally:
            if not holder.closed:  # a connection lost has let the lock go already
                holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK])


class Command(migrate.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        with migrate_lock(options["database"]):
            super().handle(*args, **options)

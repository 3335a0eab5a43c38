"""Database helpers every app may use."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db import connection, models

from chatbot_site.pgconnection import BoundedConnection


def without_statement_timeout() -> None:
    """No ``DB_STATEMENT_TIMEOUT_SECONDS`` for the rest of the current transaction (call inside
    one): for a deletion whose single statement grows with what it removes (a dataset's chunks,
    a bot's conversations), which the request bound would otherwise make impossible for the
    largest ones (20,000 chunks took 1.6 s here, their term counts included). The client's
    own bound on the server's answer (``chatbot_site.pgconnection``) is lifted with it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
    if isinstance(connection.connection, BoundedConnection):
        connection.connection.lift_bound()


def key_share(model: type[models.Model], tenant_id: Any, ids: Collection[Any]) -> set[Any]:
    """Those of the tenant's ``model`` rows ``ids`` that exist, each locked against deletion
    until the transaction ends (``FOR KEY SHARE``: not against an update, nor against other
    such locks). For a write that points at them (a bot's scope, its datasets, a turn's bot):
    a deletion that locks the row first then either waits for this write and sees it, or has
    deleted the row, and the write finds it gone instead of failing its foreign key at commit."""
    if not ids:
        return set()
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE tenant_id = %s AND id = ANY(%s) "  # noqa: S608
            "ORDER BY id FOR KEY SHARE",
            [tenant_id, list(ids)],
        )
        return {row[0] for row in cursor.fetchall()}

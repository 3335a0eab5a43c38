"""Database helpers every app may use."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

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
    with connection.cursor() as cursor:
        cursor.execute(*key_share_sql(model, tenant_id, ids))
        return {row[0] for row in cursor.fetchall()}


def key_share_sql(
    model: type[models.Model], tenant_id: Any, ids: Collection[Any]
) -> tuple[str, list[Any]]:
    """:func:`key_share`'s statement and parameters, for a statement of its own that locks the
    rows before it writes what points at them (``WITH locked AS MATERIALIZED (...)``)."""
    table = connection.ops.quote_name(model._meta.db_table)
    return (
        f"SELECT id FROM {table} WHERE tenant_id = %s AND id = ANY(%s) "  # noqa: S608
        "ORDER BY id FOR KEY SHARE",
        [tenant_id, list(ids)],
    )


def insert_rows_sql(objs: Sequence[models.Model]) -> tuple[str, str, str, list[Any]]:
    """The table, the ``(columns)`` and ``VALUES (...), ...`` of new rows ``objs`` (of one
    model; at least one), each value what Django's own insert sends (the fields' ``pre_save``:
    creation times; ``get_db_prep_save``) cast to its column's type, for an insert the ORM
    cannot write: one that depends on another part of its statement (``INSERT INTO t cols
    SELECT v.* FROM (VALUES ...) v WHERE ...``). Marks the objects as saved, as ``bulk_create``
    does; no signals are sent (neither does it)."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy is a look-up
    table, fields, columns, row = _insert_shape(type(objs[0]))
    params: list[Any] = []
    for obj in objs:
        params.extend(field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields)
        obj._state.adding, obj._state.db = False, db.alias
    return table, columns, "VALUES " + ", ".join([row] * len(objs)), params


@functools.cache
def _insert_shape(model: type[models.Model]) -> tuple[str, list[Any], str, str]:
    """``model``'s table, the fields an insert writes, their ``(columns)`` and a row's
    ``(%s::type, ...)``: the same for every insert (26 ``db_type`` calls a chat turn)."""
    db = connections[DEFAULT_DB_ALIAS]
    fields = [field for field in model._meta.local_concrete_fields if not field.generated]
    columns = ", ".join(db.ops.quote_name(field.column) for field in fields)
    # Types without their length, as Django's bulk insert casts (varchar, not varchar(200)): a
    # cast to varchar(200) would cut a longer value where the column refuses it.
    casts = [f"%s::{str(field.db_type(db)).split('(')[0]}" for field in fields]
    return db.ops.quote_name(model._meta.db_table), fields, f"({columns})", f"({', '.join(casts)})"


def links_lock(model: type[models.Model], ids: Collection[Any], *, shared: bool) -> None:
    """Lock, until the transaction ends, the links to the ``model`` rows ``ids`` (a bot's scope,
    its datasets): exclusively for a write that links a bot to them, shared for a change by a
    key limited to some bots, which checks that no other bot uses the object (``bots.reach``)
    and may then change it. The change either waits for a link being written and then sees it,
    or the link waits until the change is committed: no bot is linked between the check and
    the change. Advisory locks, not the rows': a worker storing chunks holds its document's row
    and then share-locks its dataset's (``ingestion._store``), so the dataset's row locked
    before a document's (to delete or reingest it) could deadlock with it.
    Shared changes of one object (documents added by two limited keys) do not wait for each
    other. Call inside the transaction of the write, before its row locks."""
    if not connection.in_atomic_block:
        raise RuntimeError("links_lock outside a transaction would be released at once")
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    prefix = f"{model._meta.db_table}:"
    with connection.cursor() as cursor:
        for pk in sorted(ids, key=str):  # in one order: two linking writes cannot deadlock
            cursor.execute(f"SELECT {function}(hashtextextended(%s, 0))", [f"{prefix}{pk}"])

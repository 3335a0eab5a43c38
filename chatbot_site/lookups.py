"""Hot single-row lookups whose SQL is written once per process.

Django builds a queryset's SQL again on every call: for an API key found by its prefix, with
its tenant, that is 0.28 ms of a 0.43 ms lookup (the query itself 0.15 ms; measured in
process), and every chat turn made three such lookups before its first useful step. A
:class:`Lookup` writes the statement once from the models' metadata and builds the instances
as the ORM does (``Model.from_db``), each joined row cached on its foreign key as
``select_related`` would. For anything but a hot path, use the ORM."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Field, ForeignKey, Model

M = TypeVar("M", bound=Model)


def _fields(model: type[Model]) -> list[Field]:
    fields = list(model._meta.concrete_fields)
    for f in fields:
        # The ORM would convert these values on the way out of the database; this does not.
        if f.get_db_converters(connection):  # type: ignore[attr-defined]  # missing in the stubs
            raise TypeError(f"{model.__name__}.{f.name} needs a converter: use the ORM")
    return fields


@dataclass(frozen=True)
class Lookup(Generic[M]):
    """At most one ``model`` row matching ``where`` (SQL over the alias ``t0``, ``%s``
    placeholders), with the rows its foreign keys in ``related`` point to (``t1``, ``t2``...,
    left-joined: a null key leaves the relation ``None``)."""

    model: type[M]
    where: str
    related: tuple[str, ...] = ()

    @cached_property
    def _plan(self) -> tuple[str, list[tuple[ForeignKey | None, type[Model], list[str]]]]:
        opts = self.model._meta
        parts: list[tuple[ForeignKey | None, type[Model], list[str]]] = [
            (None, self.model, [f.attname for f in _fields(self.model)])
        ]
        columns = [f't0."{f.column}"' for f in _fields(self.model)]
        joins = []
        for i, name in enumerate(self.related, start=1):
            fk = opts.get_field(name)
            if not isinstance(fk, ForeignKey):
                raise TypeError(f"{self.model.__name__}.{name} is not a foreign key")
            target: type[Model] = fk.related_model  # type: ignore[assignment]
            target_fields = _fields(target)
            parts.append((fk, target, [f.attname for f in target_fields]))
            columns += [f't{i}."{f.column}"' for f in target_fields]
            joins.append(
                f'LEFT JOIN "{target._meta.db_table}" t{i} '
                f'ON t{i}."{target._meta.pk.column}" = t0."{fk.column}"'
            )
        # Names from the models' metadata; ``where`` is code; every value is a bound parameter.
        table = f'"{opts.db_table}" t0 {" ".join(joins)}'
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {self.where} LIMIT 1"  # noqa: S608
        return sql, parts

    def get(self, *params: Any) -> M | None:
        sql, parts = self._plan
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        (_, model, attnames), *joined = parts
        obj = model.from_db(DEFAULT_DB_ALIAS, attnames, row[: len(attnames)])
        start = len(attnames)
        for fk, target, names in joined:
            values = row[start : start + len(names)]
            start += len(names)
            # A left join that found nothing: every column null, the primary key too.
            related = None if values[0] is None else target.from_db(DEFAULT_DB_ALIAS, names, values)
            fk.set_cached_value(obj, related)  # type: ignore[union-attr]  # None: no row
        return obj  # type: ignore[return-value]

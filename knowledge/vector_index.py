"""The ANN index on ``knowledge_chunk.embedding``: HNSW or IVFFLAT, chosen by the
``VECTOR_INDEX_KIND`` setting.

HNSW builds incrementally and keeps recall as rows arrive one document at a time; IVFFLAT
builds faster and is smaller but learns its lists from the rows present when it is built, so it
must be rebuilt after a bulk load (``manage.py vector_index --rebuild``). Both use cosine
distance, matching the normalised embeddings.

A large dataset in a shared table also gets an index of its own: a partial index ``WHERE
dataset_id = ...`` over its rows alone (:func:`maintain`, run by celery beat and by
``manage.py vector_index --datasets``). Searching 10,000 rows of a 200,000-row table through the
shared index makes HNSW visit about 1/0.05 tuples for each one of the dataset's it keeps (3.4 ms
at p50); through its own index it visits about ``ef_search`` (1.2 ms; docs/BENCHMARKS.md). The
cost: the dataset's inserts go into two graphs, and the index takes the dataset's share of the
shared one's size again. Small datasets do without: the planner sorts a couple of thousand rows
exactly (2.5 ms) rather than start an HNSW scan, with or without an index of their own.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

INDEX_NAME = "chunk_embedding_ann"
TABLE = "knowledge_chunk"
DATASET_INDEX_PREFIX = "chunk_ann_ds_"
KINDS = ("hnsw", "ivfflat")
# A dataset gets an index of its own while it holds at most this share of the table's chunks
# (past it, the shared index finds its rows nearly as fast), and keeps it up to the second.
DATASET_MAX_SHARE = 0.5
DATASET_KEEP_SHARE = 0.75
_MAINTAIN_LOCK = 0x76656374  # pg advisory lock: one maintain() at a time
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


def ivfflat_lists(rows: int) -> int:
    """pgvector's guidance: rows/1000 up to 1M rows, sqrt(rows) beyond; at least 1."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return int(math.sqrt(rows))


def _options(kind: str, rows: int) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown vector index kind {kind!r}; expected one of {KINDS}")
    if kind == "hnsw":
        return f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
    return f"lists = {ivfflat_lists(rows)}"


def create_sql(kind: str, *, rows: int = 0, concurrently: bool = False) -> str:
    options = _options(kind, rows)
    how = "CONCURRENTLY " if concurrently else ""
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {INDEX_NAME} ON {TABLE} "
        f"USING {kind} (embedding vector_cosine_ops) WITH ({options})"
    )


def dataset_index_name(dataset_id: uuid.UUID) -> str:
    return f"{DATASET_INDEX_PREFIX}{dataset_id.hex}"


def dataset_create_sql(
    kind: str, dataset_id: uuid.UUID, *, rows: int = 0, concurrently: bool = False
) -> str:
    """The dataset's own partial index. The predicate is the literal the retrieval statement
    compares ``dataset_id`` with, so the planner proves the index applies."""
    options = _options(kind, rows)
    how = "CONCURRENTLY " if concurrently else ""
    dataset = uuid.UUID(str(dataset_id))  # formatted into SQL: only ever a UUID's own text
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {dataset_index_name(dataset)} ON {TABLE} "
        f"USING {kind} (embedding vector_cosine_ops) WITH ({options}) "
        f"WHERE dataset_id = '{dataset}'::uuid"
    )


def dataset_drop_sql(name: str, *, concurrently: bool = False) -> str:
    if not name.startswith(DATASET_INDEX_PREFIX) or not name[len(DATASET_INDEX_PREFIX) :].isalnum():
        raise ValueError(f"not a dataset index: {name!r}")
    how = "CONCURRENTLY " if concurrently else ""
    return f"DROP INDEX {how}IF EXISTS {name}"


def drop_sql(*, concurrently: bool = False) -> str:
    how = "CONCURRENTLY " if concurrently else ""
    return f"DROP INDEX {how}IF EXISTS {INDEX_NAME}"


def current_kind(cursor: Any) -> str | None:
    cursor.execute(
        """
        SELECT am.amname FROM pg_class idx
        JOIN pg_am am ON am.oid = idx.relam
        WHERE idx.relname = %s AND idx.relkind = 'i'
        """,
        [INDEX_NAME],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def migration_forwards(apps: Any, schema_editor: Any) -> None:
    from django.conf import settings

    schema_editor.execute(create_sql(settings.VECTOR_INDEX_KIND))


def migration_backwards(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(drop_sql())


@dataclass(frozen=True)
class DatasetIndex:
    name: str
    dataset_id: uuid.UUID
    kind: str
    valid: bool


def dataset_indexes(cursor: Any) -> list[DatasetIndex]:
    """The datasets' own indexes present on the chunk table (valid or left invalid by a failed
    concurrent build)."""
    cursor.execute(
        """
        SELECT idx.relname, am.amname, i.indisvalid FROM pg_index i
        JOIN pg_class idx ON idx.oid = i.indexrelid
        JOIN pg_am am ON am.oid = idx.relam
        WHERE i.indrelid = %s::regclass AND idx.relname LIKE %s
        """,
        [TABLE, DATASET_INDEX_PREFIX.replace("_", r"\_") + "%"],
    )
    found = []
    for name, kind, valid in cursor.fetchall():
        try:
            dataset_id = uuid.UUID(hex=name[len(DATASET_INDEX_PREFIX) :])
        except ValueError:
            continue
        found.append(DatasetIndex(name=name, dataset_id=dataset_id, kind=kind, valid=valid))
    return found


def maintain(*, concurrently: bool = True) -> dict[str, Any]:
    """Give each large dataset its own index and take it from datasets that no longer need it.

    A dataset qualifies with at least ``VECTOR_INDEX_DATASET_MIN_CHUNKS`` chunks and at most
    half the table's; it keeps its index down to half that many chunks and three quarters of
    the table (so a dataset at the boundary is not rebuilt back and forth). An index of the
    other kind than ``VECTOR_INDEX_KIND``, or left invalid by a failed build, is rebuilt.
    ``Dataset.own_vector_index`` is set only once its index is valid and cleared before it is
    dropped; retrieval is correct either way (without the index the shared one serves).
    One run at a time (an advisory lock); ``concurrently`` keeps chunks writable meanwhile.
    Returns what it did."""
    from django.conf import settings
    from django.db import connection

    from knowledge.models import Dataset

    minimum = settings.VECTOR_INDEX_DATASET_MIN_CHUNKS
    kind = settings.VECTOR_INDEX_KIND
    done: dict[str, Any] = {"created": [], "dropped": [], "kept": [], "busy": False}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_MAINTAIN_LOCK])
        if not cursor.fetchone()[0]:
            done["busy"] = True
            return done
        try:
            cursor.execute(
                f"SELECT dataset_id, count(*) FROM {TABLE} GROUP BY dataset_id"  # noqa: S608
            )
            sizes = {row[0]: row[1] for row in cursor.fetchall()}
            total = sum(sizes.values())
            present = {index.dataset_id: index for index in dataset_indexes(cursor)}

            def wanted(dataset_id: uuid.UUID, have: bool) -> bool:
                rows = sizes.get(dataset_id, 0)
                if have:
                    return rows >= minimum / 2 and rows <= DATASET_KEEP_SHARE * total
                return rows >= minimum and rows <= DATASET_MAX_SHARE * total

            for dataset_id, index in present.items():
                if index.valid and index.kind == kind and wanted(dataset_id, True):
                    done["kept"].append(str(dataset_id))
                    continue
                Dataset.all_tenants.filter(pk=dataset_id).update(own_vector_index=False)
                cursor.execute(dataset_drop_sql(index.name, concurrently=concurrently))
                done["dropped"].append(str(dataset_id))
            keep = {uuid.UUID(d) for d in done["kept"]}
            for dataset_id in sorted(sizes, key=lambda d: -sizes[d]):
                if dataset_id in keep or not wanted(dataset_id, False):
                    continue
                cursor.execute(
                    dataset_create_sql(
                        kind, dataset_id, rows=sizes[dataset_id], concurrently=concurrently
                    )
                )
                done["created"].append(str(dataset_id))
                keep.add(dataset_id)
            # The flags follow the valid indexes (also mending any a crash left behind).
            Dataset.all_tenants.filter(pk__in=keep, own_vector_index=False).update(
                own_vector_index=True
            )
            Dataset.all_tenants.exclude(pk__in=keep).filter(own_vector_index=True).update(
                own_vector_index=False
            )
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_MAINTAIN_LOCK])
    if done["created"] or done["dropped"]:
        log.info("dataset_vector_indexes", created=len(done["created"]),
                 dropped=len(done["dropped"]), kept=len(done["kept"]))  # fmt: skip
    return done

"""The ANN index on ``knowledge_chunk.embedding``: HNSW or IVFFLAT, chosen by the
``VECTOR_INDEX_KIND`` setting.

HNSW builds incrementally and keeps recall as rows arrive one document at a time; IVFFLAT
builds faster and is smaller but learns its lists from the rows present when it is built, so it
must be rebuilt after a bulk load (``manage.py vector_index --rebuild``). Both use cosine
distance, matching the normalised embeddings.
"""

from __future__ import annotations

import math
from typing import Any

INDEX_NAME = "chunk_embedding_ann"
TABLE = "knowledge_chunk"
KINDS = ("hnsw", "ivfflat")
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


def ivfflat_lists(rows: int) -> int:
    """pgvector's guidance: rows/1000 up to 1M rows, sqrt(rows) beyond; at least 1."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return int(math.sqrt(rows))


def create_sql(kind: str, *, rows: int = 0, concurrently: bool = False) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown vector index kind {kind!r}; expected one of {KINDS}")
    how = "CONCURRENTLY " if concurrently else ""
    if kind == "hnsw":
        options = f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
    else:
        options = f"lists = {ivfflat_lists(rows)}"
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {INDEX_NAME} ON {TABLE} "
        f"USING {kind} (embedding vector_cosine_ops) WITH ({options})"
    )


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

"""Query vectors, kept per process: a tenant's repeated question (an FAQ asked again, the previous
message a follow-up is searched with) is embedded once.

The key is the tenant, the embedder (backend, model, dimensions) and a SHA-256 of the text — never
the text itself — so one tenant's questions cannot speed up another's (a timing side channel that
would tell a tenant what others ask) and a model change embeds afresh. Vectors are stored as 32-bit
floats (1.5 kB for 384 dimensions); ``EMBEDDING_QUERY_CACHE_SIZE`` entries at most, least
recently used out first; 0 turns it off. A text found here costs no embedding tokens.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from django.conf import settings

from knowledge.embeddings import Embedder

Key = tuple[str, str, int, str, bytes]


class QueryVectorCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[Key, array[float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> list[float] | None:
        with self._lock:
            vector = self._entries.get(key)
            if vector is None:
                return None
            self._entries.move_to_end(key)
        return vector.tolist()

    def put(self, key: Key, vector: Sequence[float], *, size: int) -> list[float]:
        """Keep ``vector`` (as 32-bit floats) and return it as kept."""
        packed = array("f", vector)
        with self._lock:
            self._entries[key] = packed
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)
        return packed.tolist()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


CACHE = QueryVectorCache()


def key_for(tenant_id: uuid.UUID, embedder: Embedder, text: str) -> Key:
    return (
        str(tenant_id),
        type(embedder).__name__,
        embedder.dimensions,
        embedder.model,
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(),
    )


def embed_cached(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    tenant_id: uuid.UUID | None,
    within: float | None = None,
) -> tuple[list[list[float]], int]:
    """``embedder.embed_counted(texts)`` for the texts not kept yet (one call), the kept
    vectors for the others; the tokens are those of the call alone. Without a tenant, or with
    the cache off, every text is embedded."""
    size = settings.EMBEDDING_QUERY_CACHE_SIZE
    if size <= 0 or tenant_id is None:
        return embedder.embed_counted(list(texts), within=within)
    keys = [key_for(tenant_id, embedder, text) for text in texts]
    vectors: list[list[float] | None] = [CACHE.get(key) for key in keys]
    missing = [i for i, vector in enumerate(vectors) if vector is None]
    tokens = 0
    if missing:
        fresh, tokens = embedder.embed_counted([texts[i] for i in missing], within=within)
        for i, vector in zip(missing, fresh, strict=True):
            # As kept: a question's vector is the same whether it was kept or not (pgvector
            # reads 32-bit floats anyway).
            vectors[i] = CACHE.put(keys[i], vector, size=size)
    return [vector or [] for vector in vectors], tokens

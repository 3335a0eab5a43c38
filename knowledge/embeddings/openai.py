"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint.

Batched within the provider's limits (inputs per request and tokens per request), ``dimensions``
passed through, retried with exponential backoff and full jitter on 429, 5xx, timeouts and
connection errors; any other 4xx is permanent. A caller that waits (a question being embedded)
gives a time budget for all the attempts and waits together (``within``); ingestion gives none.
Batches are sized with the local model's tokenizer — close to, not exactly, the provider's, so
they keep a margin for the difference; the tokens *reported* (usage) are the provider's own
count from each response.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import structlog
from django.conf import settings

from knowledge.embeddings import EmbeddingError
from knowledge.embeddings.local import _tokenizer_file, count_tokens

log = structlog.get_logger(__name__)

MAX_INPUTS = 256  # OpenAI allows 2048; smaller requests fail and retry cheaper
MAX_TOKENS_PER_REQUEST = 200_000  # OpenAI: 300,000; margin for tokenizer differences
MAX_INPUT_TOKENS = 8000  # OpenAI: 8,192
ATTEMPTS = 5


class OpenAIEmbedder:
    max_tokens = 512  # chunk ceiling: retrieval quality, not the provider, sets it

    def __init__(self) -> None:
        from openai import OpenAI

        self.model = settings.EMBEDDING_MODEL
        self.dimensions = settings.EMBEDDING_DIMENSIONS
        self._client = OpenAI(
            api_key=settings.OPENAI_API_KEY or "not-set",
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.EMBEDDING_TIMEOUT_SECONDS,
            max_retries=0,  # retries are ours: jittered, and counted in the logs
        )
        self._local_counter: Any = None

    def count_tokens(self, text: str) -> int:
        if self._local_counter is None:
            from tokenizers import Tokenizer

            counter = Tokenizer.from_file(str(_tokenizer_file()))
            counter.no_truncation()
            counter.no_padding()
            self._local_counter = counter
        return count_tokens(self._local_counter, text)

    def _cost(self, text: str) -> int:
        """Our estimate of the provider's tokens. WordPiece reads a long or unknown-script word as
        one ``[UNK]`` where a byte-level BPE needs many, so the UTF-8 length / 4 (about one BPE
        token per 4 bytes of English) is the floor of the estimate."""
        return max(self.count_tokens(text), -(-len(text.encode()) // 4))

    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        batches: list[list[str]] = []
        current: list[str] = []
        tokens = 0
        for text in texts:
            text = _fit(text)
            cost = min(self._cost(text), MAX_INPUT_TOKENS)
            if current and (len(current) >= MAX_INPUTS or tokens + cost > MAX_TOKENS_PER_REQUEST):
                batches.append(current)
                current, tokens = [], 0
            current.append(text)
            tokens += cost
        if current:
            batches.append(current)
        return batches

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_counted(texts)[0]

    def embed_counted(
        self, texts: Sequence[str], *, within: float | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors and the tokens the provider billed (its ``usage``; our estimate if absent).
        ``within``: seconds for the whole call, retries and their waits included."""
        deadline = None if within is None else time.monotonic() + within
        vectors: list[list[float]] = []
        tokens = 0
        for batch in self._batches(texts):
            batch_vectors, batch_tokens = self._embed_batch(batch, deadline)
            vectors.extend(batch_vectors)
            tokens += batch_tokens
        return vectors, tokens

    def _embed_batch(
        self, batch: list[str], deadline: float | None
    ) -> tuple[list[list[float]], int]:
        import openai

        for attempt in range(1, ATTEMPTS + 1):
            timeout = settings.EMBEDDING_TIMEOUT_SECONDS
            if deadline is not None and (timeout := min(timeout, _left(deadline))) <= 0:
                raise EmbeddingError(LATE, transient=True)
            try:
                response = self._client.embeddings.create(
                    model=self.model, input=batch, dimensions=self.dimensions, timeout=timeout
                )
                data = sorted(response.data, key=lambda item: item.index)
                vectors = [_normalise(item.embedding) for item in data]
                if len(vectors) != len(batch) or any(len(v) != self.dimensions for v in vectors):
                    raise EmbeddingError(
                        "The provider returned vectors of the wrong number or size.",
                        transient=False,
                        code="embedding_dimension_mismatch",
                    )
                usage = getattr(response, "usage", None)
                billed = getattr(usage, "prompt_tokens", None)
                if not isinstance(billed, int):
                    billed = sum(self.count_tokens(text) for text in batch)
                return vectors, billed
            except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                    openai.InternalServerError) as exc:  # fmt: skip
                transient: Exception = exc
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    transient = exc
                else:
                    raise EmbeddingError(
                        f"The embedding provider refused the request ({exc.status_code}).",
                        transient=False,
                        code="embedding_rejected",
                    ) from exc
            if attempt == ATTEMPTS:  # ingestion's task tries again later; a question cannot
                later = "" if deadline is not None else "; will retry later"
                raise EmbeddingError(
                    f"The embedding provider kept failing{later}.", transient=True
                ) from transient
            base = settings.EMBEDDING_RETRY_BASE_SECONDS
            delay = random.uniform(0, min(30.0, base * 2**attempt))  # noqa: S311 (jitter)
            if deadline is not None and delay >= _left(deadline):
                raise EmbeddingError(LATE, transient=True) from transient
            log.warning(
                "embedding_retry", attempt=attempt, error=type(transient).__name__, delay_s=delay
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


LATE = "The embedding provider did not answer in time."


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _fit(text: str) -> str:
    """An input the provider cannot refuse for length: a byte-level BPE never needs more tokens
    than the text has UTF-8 bytes, so a text within MAX_INPUT_TOKENS bytes always fits. Only
    pathological chunks are longer (ours are at most 512 WordPiece tokens, ~2-3 kB of text);
    they are embedded by their first MAX_INPUT_TOKENS bytes instead of failing the document."""
    data = text.encode()
    if len(data) <= MAX_INPUT_TOKENS:
        return text
    return data[:MAX_INPUT_TOKENS].decode(errors="ignore")


def _normalise(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]

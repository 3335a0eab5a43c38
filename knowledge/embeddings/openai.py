"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint.

Batched within the provider's limits (inputs per request and tokens per request), ``dimensions``
passed through, retried with exponential backoff and full jitter on 429, 5xx, timeouts,
connection errors and answers that are not well-formed embeddings answers (:func:`_read`: the
provider's answer is checked, never trusted, before a vector reaches the database); any other
4xx is permanent. Each request, its answer's last byte included, ends within its timeout
(:mod:`knowledge.embeddings.deadline`: a provider that trickles its answer is cut there, as a
timeout). A caller that waits (a question being embedded) gives a time budget for all the
attempts and waits together (``within``); ingestion gives none.
Batches are sized with the local model's tokenizer — close to, not exactly, the provider's, so
they keep a margin for the difference; the tokens *reported* (usage) are the provider's own
count from each response, where it is plausible (:func:`_billed`).
"""

from __future__ import annotations

import base64
import json
import math
import random
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import structlog
from django.conf import settings

from chatbot_site.providers import retry_after
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

        from knowledge.embeddings.deadline import http_client

        self.model = settings.EMBEDDING_MODEL
        self.dimensions = settings.EMBEDDING_DIMENSIONS
        # text-embedding-3-* and most served models read many scripts; sentence-transformers'
        # "all-*" models (the local one among them) read English, whoever serves them.
        self.latin_only: bool = (
            self.model.rsplit("/", 1)[-1].lower().startswith("all-")
            if settings.EMBEDDING_LATIN_ONLY is None
            else settings.EMBEDDING_LATIN_ONLY
        )
        self._client = OpenAI(
            api_key=settings.OPENAI_API_KEY or "not-set",
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.EMBEDDING_TIMEOUT_SECONDS,
            max_retries=0,  # retries are ours: jittered, and counted in the logs
            http_client=http_client(),  # a request's timeout bounds it whole, answer included
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

    def _batches(self, texts: Sequence[str]) -> list[tuple[list[str], int]]:
        """The texts (each cut to fit, :func:`_fit`) in requests within the provider's limits,
        each with our estimate of its tokens."""
        batches: list[tuple[list[str], int]] = []
        current: list[str] = []
        tokens = 0
        for text in texts:
            text = _fit(text)
            cost = min(self._cost(text), MAX_INPUT_TOKENS)
            if current and (len(current) >= MAX_INPUTS or tokens + cost > MAX_TOKENS_PER_REQUEST):
                batches.append((current, tokens))
                current, tokens = [], 0
            current.append(text)
            tokens += cost
        if current:
            batches.append((current, tokens))
        return batches

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_counted(texts)[0]

    def embed_counted(
        self, texts: Sequence[str], *, within: float | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors and the tokens the provider billed (its ``usage`` where plausible, else our
        estimate: :func:`_billed`).
        ``within``: seconds for the whole call, retries and their waits included. A request
        that fails after others were answered raises with their tokens (``EmbeddingError.spent``):
        the provider billed them, and they were lost from usage."""
        deadline = None if within is None else time.monotonic() + within
        vectors: list[list[float]] = []
        tokens = 0
        for batch, estimate in self._batches(texts):
            try:
                batch_vectors, batch_tokens = self._embed_batch(batch, estimate, deadline)
            except EmbeddingError as exc:
                exc.spent += tokens
                raise
            vectors.extend(batch_vectors)
            tokens += batch_tokens
        return vectors, tokens

    def _embed_batch(
        self, batch: list[str], estimate: int, deadline: float | None
    ) -> tuple[list[list[float]], int]:
        import openai

        last: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            timeout = settings.EMBEDDING_TIMEOUT_SECONDS
            if deadline is not None and (timeout := min(timeout, _left(deadline))) <= 0:
                raise EmbeddingError(_late(last), transient=True) from last
            try:
                # The raw answer, read by us (_read): the SDK's own reading of a broken answer
                # raises whatever its parts do (ValueError, AttributeError, binascii.Error ...).
                response = self._client.embeddings.with_raw_response.create(
                    model=self.model, input=batch, dimensions=self.dimensions,
                    encoding_format="base64", timeout=timeout,
                )  # fmt: skip
                vectors, reported = _read(response.http_response.content, len(batch))
                if any(len(v) != self.dimensions for v in vectors):
                    if len({len(v) for v in vectors}) > 1:
                        raise InvalidAnswer("vectors of different sizes")
                    raise EmbeddingError(
                        "The provider returned vectors of the wrong size.",
                        transient=False,
                        code="embedding_dimension_mismatch",
                    )
                return vectors, _billed(reported, estimate)
            except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                    openai.InternalServerError, InvalidAnswer) as exc:  # fmt: skip
                last = exc
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    last = exc
                else:
                    raise EmbeddingError(
                        f"The embedding provider refused the request ({exc.status_code}).",
                        transient=False,
                        code="embedding_rejected",
                    ) from exc
            if attempt == ATTEMPTS:  # ingestion's task tries again later; a question cannot
                later = "" if deadline is not None else "; will retry later"
                message = (
                    INVALID
                    if isinstance(last, InvalidAnswer)
                    else f"The embedding provider kept failing{later}."
                )
                raise EmbeddingError(message, transient=True) from last
            base = settings.EMBEDDING_RETRY_BASE_SECONDS
            delay = random.uniform(0, min(30.0, base * 2**attempt))  # noqa: S311 (jitter)
            wait = retry_after(last)  # asking sooner than the provider said earns another 429
            if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:  # the task comes back later
                message = RATE_LIMITED + ("" if deadline is not None else "; will retry later")
                raise EmbeddingError(message + ".", transient=True, retry_after=wait) from last
            delay = max(delay, wait or 0.0)
            if deadline is not None and delay >= _left(deadline):
                raise EmbeddingError(_late(last), transient=True) from last
            reason = {"reason": str(last)} if isinstance(last, InvalidAnswer) else {}
            log.warning("embedding_retry", attempt=attempt, error=type(last).__name__,
                        delay_s=delay, **reason)  # fmt: skip
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


class InvalidAnswer(Exception):
    """The provider answered 200 with something that is not a well-formed embeddings answer
    (a proxy's HTML page, truncated JSON, no vectors, NaN ...): transient, like a 5xx, since
    that is what a proxy in trouble sends. The message says what was wrong, for the log."""


INVALID = "The embedding provider sent an invalid answer."
RATE_LIMITED = "The embedding provider asked us to wait"
# The longest Retry-After an embedding call sleeps for (a worker slot waits meanwhile); longer,
# and the call fails transiently: ingestion's task is retried later, a question gets its 502.
MAX_RETRY_AFTER_SECONDS = 30.0
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


# A provider's count of a request's tokens is believed up to this many times our estimate plus
# USAGE_SLACK: our estimate is at least a token per 4 bytes of UTF-8, and a byte-level BPE never
# needs more tokens than the text has bytes (USAGE_SLACK: the special tokens some add per input).
USAGE_FACTOR = 4
USAGE_SLACK = 100


def _billed(reported: object, estimate: int) -> int:
    """The tokens to bill for a request: the provider's count (``usage.prompt_tokens``) if it is
    plausible — an int (not a bool), 0 or more, at most ``USAGE_FACTOR`` x our estimate +
    ``USAGE_SLACK`` — else our estimate. It is added to a tenant's usage and quota: -1,000,000
    made a tenant's totals negative (a quota bypass), 10**12 locked it out of chat for the
    month and overflowed a chat turn's token columns."""
    if reported is None:  # no usage: not every compatible provider sends it
        return estimate
    if type(reported) is int and 0 <= reported <= USAGE_FACTOR * estimate + USAGE_SLACK:
        return reported
    log.warning("embedding_usage_implausible", value=repr(reported)[:40], estimate=estimate)
    return estimate


def _late(last: Exception | None) -> str:
    return INVALID if isinstance(last, InvalidAnswer) else LATE


def _read(body: bytes, count: int) -> tuple[list[list[float]], object]:
    """The unit vectors of an embeddings answer for ``count`` inputs, in input order, and its
    ``usage.prompt_tokens`` as sent (None if absent); :class:`InvalidAnswer` unless it has
    exactly ``count`` items whose ``index`` values are the ints 0..count-1 and whose vectors
    are valid (:func:`_unit`). Duplicate or string indexes would hand chunks each other's
    vectors."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, [[[[...
        raise InvalidAnswer("not JSON") from exc
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise InvalidAnswer(f"no list of {count} embeddings")
    vectors: list[list[float] | None] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise InvalidAnswer("indexes are not 0..n-1")
        vectors[index] = _unit(item.get("embedding"))
    usage = answer.get("usage")
    return [v for v in vectors if v is not None], (
        usage.get("prompt_tokens") if isinstance(usage, dict) else None
    )


def _unit(embedding: object) -> list[float]:
    """The vector scaled to unit length: a list of numbers (not bools or strings) or base64 of
    little-endian float32s, every value finite, not all zero (a zero vector has no direction:
    its cosine similarity to anything is NaN) and not so large that the squares overflow."""
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except ValueError as exc:  # binascii.Error
            raise InvalidAnswer("invalid base64") from exc
        if not raw or len(raw) % 4:
            raise InvalidAnswer("base64 of a length no float32s have")
        values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif isinstance(embedding, list) and embedding and {type(x) for x in embedding} <= NUMBERS:
        try:
            values = np.asarray(embedding, dtype=np.float64)
        except OverflowError as exc:  # an int beyond any float
            raise InvalidAnswer("a value out of range") from exc
    else:
        raise InvalidAnswer("an embedding that is not a list of numbers")
    if not np.isfinite(values).all():
        raise InvalidAnswer("a value that is NaN or infinite")
    with np.errstate(over="ignore", under="ignore"):
        squares = float(np.dot(values, values))
    if not math.isfinite(squares) or squares <= 0:
        raise InvalidAnswer("a zero vector, or one too large to scale")
    return cast(list[float], (values / math.sqrt(squares)).tolist())


NUMBERS = {int, float}  # JSON numbers as json.loads reads them (a bool is not one)

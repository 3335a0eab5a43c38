"""The prompt-injection classifier: logistic regression over TF-IDF of character n-grams.

Features: character n-grams of 2..5 within words (each word padded with a space, case-folded),
as scikit-learn's ``char_wb`` analyzer makes them, weighted by sublinear term frequency and a
smoothed inverse document frequency, each text's vector L2-normalised. Character n-grams read
English and German alike and survive misspellings, which the English sentence-embedding model
did not (68% of held-out injections at 2% false positives; this model: see docs/GUARDRAILS.md).

Scoring a text is a dictionary walk over its n-grams: no model to load, no embedding call.
Fitting (``manage.py train_injection``) is full-batch gradient descent with Nesterov momentum
on the class-balanced logistic loss, in NumPy, over the texts' non-zero features only (a text
has ~240 of ~14,000: 12x less CPU than the dense matrix products, the same weights).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LOW, HIGH = 2, 5
MAX_CHARS = 20_000  # longer questions are scored on their first 20,000 characters
_WS = re.compile(r"\s+")


def char_ngrams(text: str) -> list[str]:
    words = _WS.sub(" ", text[:MAX_CHARS].casefold()).split()
    grams: list[str] = []
    for word in words:
        padded = f" {word} "
        for n in range(LOW, HIGH + 1):
            if len(padded) < n:
                break
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


@dataclass(frozen=True)
class NgramModel:
    features: Mapping[str, tuple[float, float]]  # n-gram → (idf, weight)
    bias: float

    def score(self, text: str) -> float:
        """Probability (0..1) that ``text`` is an injection."""
        counts = Counter(g for g in char_ngrams(text) if g in self.features)
        values = [
            ((1 + math.log(c)) * self.features[g][0], self.features[g][1])
            for g, c in counts.items()
        ]
        norm = math.sqrt(sum(v * v for v, _ in values)) or 1.0
        z = self.bias + sum(v * w for v, w in values) / norm
        return 1 / (1 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> NgramModel:
        raw = data["features"]
        assert isinstance(raw, dict)  # noqa: S101 (a malformed model file is a bug)
        features = {g: (float(v[0]), float(v[1])) for g, v in raw.items()}
        return cls(features=features, bias=float(data["bias"]))  # type: ignore[arg-type]


# --- fitting (manage.py train_injection) ---------------------------------------------------


@dataclass(frozen=True)
class Vectorizer:
    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, texts: Sequence[str], *, min_df: int = 2) -> Vectorizer:
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(char_ngrams(text)))
        kept = sorted(g for g, c in df.items() if c >= min_df)
        n = len(texts)
        idf = np.array([math.log((1 + n) / (1 + df[g])) + 1 for g in kept])
        return cls({g: i for i, g in enumerate(kept)}, idf)

    def transform(self, texts: Sequence[str]) -> SparseRows:
        rows: list[int] = []
        cols: list[int] = []
        tf: list[float] = []
        for row, text in enumerate(texts):
            for gram, count in Counter(char_ngrams(text)).items():
                if (col := self.vocabulary.get(gram)) is not None:
                    rows.append(row)
                    cols.append(col)
                    tf.append(1 + math.log(count))
        r, c = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
        data = np.array(tf) * self.idf[c]
        norms = np.sqrt(np.bincount(r, weights=data * data, minlength=len(texts)))
        data /= np.maximum(norms, 1e-12)[r]
        return SparseRows(r, c, data, (len(texts), len(self.vocabulary)))


@dataclass(frozen=True)
class SparseRows:
    """A matrix by its non-zero entries (row, column, value)."""

    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    def __matmul__(self, w: np.ndarray) -> np.ndarray:
        """``x @ w``"""
        return np.bincount(self.rows, weights=self.data * w[self.cols], minlength=self.shape[0])

    def rmatmul(self, g: np.ndarray) -> np.ndarray:
        """``x.T @ g``"""
        return np.bincount(self.cols, weights=self.data * g[self.rows], minlength=self.shape[1])


def fit_logistic(
    x: SparseRows, y: np.ndarray, *, l2: float, steps: int = 3000
) -> tuple[np.ndarray, float]:
    """Class-balanced, L2-regularised logistic regression. Rows of ``x`` have unit norm, so
    the loss's curvature is at most 1/4 and a fixed step with momentum converges."""
    positive = float(y.mean())
    sample = np.where(y == 1, 0.5 / positive, 0.5 / (1 - positive))
    sample /= sample.sum()
    w, b = np.zeros(x.shape[1]), 0.0
    vw, vb = np.zeros_like(w), 0.0
    rate, momentum = 3.0, 0.9
    for _ in range(steps):
        lw, lb = w + momentum * vw, b + momentum * vb
        p = 1 / (1 + np.exp(-(x @ lw + lb)))
        g = sample * (p - y)
        vw = momentum * vw - rate * (x.rmatmul(g) + l2 * lw)
        vb = momentum * vb - rate * float(g.sum())
        w, b = w + vw, b + vb
    return w, b


def to_json(vectorizer: Vectorizer, w: np.ndarray, b: float) -> dict[str, object]:
    features = {
        gram: [round(float(vectorizer.idf[i]), 5), round(float(w[i]), 5)]
        for gram, i in vectorizer.vocabulary.items()
        if abs(w[i]) >= 1e-5
    }
    return {"bias": round(b, 6), "features": features}

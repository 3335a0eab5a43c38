"""``manage.py train_injection``: fit the prompt-injection classifier (logistic regression over
the offline MiniLM embedding) on the *train* split of a labelled JSONL set (deepset
prompt-injections by default), choose the threshold by cross-validation on that split so that
at most ``--max-false-positive`` of benign prompts are flagged, and write
``knowledge/injection_model.json``. The test split is only scored, never used for fitting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from knowledge.injection import MODEL_PATH, local_embedder, rules_flag

DEFAULT_DATA = (
    "../shared/corpora/injection/deepset-prompt-injections/deepset_prompt_injections.jsonl"
)


# Our own benign questions of the kind a product's users ask (written for this repository): a
# chatbot service's users legitimately talk about prompts, instructions, rules and ignoring.
EXTRA_BENIGN = [
    "How do I set a bot's system prompt?",
    "What does the system prompt of a bot do?",
    "Can I change the instructions my bot follows?",
    "How do I ignore a file in git?",
    "How do I make the worker ignore failed documents?",
    "What are the rules for rate limits?",
    "Which instructions does the README give for make run?",
    "Show me how to create an API key.",
    "Print the list of supported file formats.",
    "What is the previous version's behaviour for refusals?",
    "Tell me how scopes restrict what a bot answers.",
    "How do I reveal the secret of an API key again?",
    "Can a bot act as a support agent for billing questions?",
    "Repeat the steps to ingest a URL.",
    "What does min_relevance on a scope do?",
    "How can I forget a conversation, i.e. delete it?",
    "Write a curl command that calls /v1/chat.",
    "What happens to the previous chunks when I reingest a document?",
    "Explain the role of the admin key versus the chat key.",
    "How do I override a setting with an environment variable?",
    "Is there a way to disable the rules about blocked topics?",
    "Which prompt does the extractive backend use?",
    "Give me the instructions for running the tests.",
    "How do I output the answer as a stream?",
    "Now that I have a key, how do I upload a PDF?",
    "Great, it works. Now how do I add a second dataset?",
    "You are the documentation bot, right? How do I start a worker?",
    "What does the refusal message of a scope look like?",
    "Can the system prompt mention our company name?",
    "How do I translate the refusal message into German?",
]


def fit(x: np.ndarray, y: np.ndarray, *, l2: float, steps: int = 1500) -> tuple[np.ndarray, float]:
    w = np.zeros(x.shape[1])
    b = 0.0
    rate = 0.5
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        grad = p - y
        w -= rate * (x.T @ grad / len(y) + l2 * w)
        b -= rate * float(grad.mean())
    return w, b


class Command(BaseCommand):
    help = "Train the prompt-injection classifier (knowledge/injection_model.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, default=settings.BASE_DIR / DEFAULT_DATA)
        parser.add_argument("--max-false-positive", type=float, default=0.02)

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [json.loads(line) for line in options["data"].open(encoding="utf-8")]
        embedder = local_embedder()
        train = [r for r in rows if r["split"] == "train"] + [
            {"text": text, "label": 0, "split": "train"} for text in EXTRA_BENIGN
        ]
        test = [r for r in rows if r["split"] == "test"]
        x = np.array(embedder.embed([r["text"] for r in train]))
        y = np.array([float(r["label"]) for r in train])
        rules = np.array([rules_flag(r["text"]) for r in train])
        rng = np.random.default_rng(7)
        folds = rng.integers(0, 5, len(y))
        best: tuple[float, float, float] | None = None  # (recall, l2, threshold)
        for l2 in (1e-4, 1e-3, 1e-2):
            scores = np.zeros(len(y))
            for fold in range(5):
                w, b = fit(x[folds != fold], y[folds != fold], l2=l2)
                scores[folds == fold] = 1 / (1 + np.exp(-(x[folds == fold] @ w + b)))
            benign = np.sort(scores[(y == 0) & ~rules])[::-1]
            allowed = int(options["max_false_positive"] * len(benign))
            threshold = float(benign[allowed]) + 1e-6 if allowed < len(benign) else 0.5
            recall = float(((scores >= threshold) | rules)[y == 1].mean())
            self.stdout.write(f"l2={l2}: cross-validated recall {recall:.3f} at {threshold:.3f}")
            if best is None or recall > best[0]:
                best = (recall, l2, threshold)
        if best is None:  # pragma: no cover - the loop above always runs
            raise RuntimeError("no model was fitted")
        recall, l2, threshold = best
        w, b = fit(x, y, l2=l2)
        xt = np.array(embedder.embed([r["text"] for r in test]))
        yt = np.array([r["label"] for r in test])
        flagged = (1 / (1 + np.exp(-(xt @ w + b))) >= threshold) | np.array(
            [rules_flag(r["text"]) for r in test]
        )
        metrics = {
            "train_cv_recall": round(recall, 3),
            "test_recall": round(float(flagged[yt == 1].mean()), 3),
            "test_false_positive_rate": round(float(flagged[yt == 0].mean()), 3),
        }
        MODEL_PATH.write_text(
            json.dumps(
                {
                    "kind": "logistic_regression",
                    "embedding_model": embedder.model,
                    "trained_on": "deepset/prompt-injections split=train + EXTRA_BENIGN",
                    "trained_at": dt.datetime.now(dt.UTC).date().isoformat(),
                    "l2": l2,
                    "threshold": round(threshold, 6),
                    "metrics": metrics,
                    "bias": round(b, 6),
                    "weights": [round(float(v), 6) for v in w],
                }
            )
            + "\n"
        )
        self.stdout.write(json.dumps(metrics))

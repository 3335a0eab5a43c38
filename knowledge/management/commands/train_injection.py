"""``manage.py train_injection``: fit the prompt-injection classifier (logistic regression over
character n-gram TF-IDF, :mod:`knowledge.injection_ngrams`) on the *train* split of a labelled
JSONL set (deepset prompt-injections by default) plus the tune split of our own benign questions
(``knowledge/evaldata/benign_questions.jsonl``) and of our role-play set (``roleplay_questions.jsonl``
there: persona injections and benign questions with role-play words) and the queries of a BEIR-style file as more
benign texts (``--claims``: SciFact's *train* claims by default, so that scientific vocabulary
is not read as an attack; its test queries stay held out; ``--claims ''`` for none); choose the
regularisation and the threshold by 5-fold cross-validation on that split, so that at most
``--max-false-positive`` of the benign *prompts* the rules pass (deepset's and ours, not the
claims, which would otherwise absorb the allowance) are flagged; write
``knowledge/injection_model.json``. The test split is only scored, never used for fitting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from knowledge.injection import MODEL_PATH, rules_flag
from knowledge.injection_ngrams import Vectorizer, fit_logistic, to_json
from knowledge.management.commands.eval_retrieval import read_jsonl

DEFAULT_DATA = (
    "../shared/corpora/injection/deepset-prompt-injections/deepset_prompt_injections.jsonl"
)
DEFAULT_CLAIMS = "../shared/corpora/eval/scifact/queries_train.jsonl"


# Our own benign questions of the kind a product's users ask (written for this repository; one
# per line, ``category`` product or long, ``split`` tune or heldout): a chatbot service's users
# legitimately talk about prompts, instructions, rules and ignoring, and introduce themselves
# ("I am writing a review ...", "My manager asked me to write a summary ..."). Only the tune
# split is fitted on; ``make eval-guardrails ONLY=injection`` reports both.
BENIGN_QUESTIONS = Path(__file__).resolve().parents[2] / "evaldata" / "benign_questions.jsonl"


def benign_questions(split: str) -> list[str]:
    return [r["text"] for r in read_jsonl(BENIGN_QUESTIONS) if r["split"] == split]


# Ours too (2026-12-07, evening): role-play / persona injections and benign questions that use
# role-play words ("act as a reviewer of my abstract"), labelled; only the tune split is fitted on.
ROLEPLAY_QUESTIONS = BENIGN_QUESTIONS.with_name("roleplay_questions.jsonl")


def roleplay_questions(split: str) -> list[dict[str, Any]]:
    return [
        {"text": r["text"], "label": int(r["label"]), "split": "train"}
        for r in read_jsonl(ROLEPLAY_QUESTIONS)
        if r["split"] == split
    ]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def choose_threshold(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    rules: np.ndarray,
    prompt: np.ndarray,
    max_false_positive: float,
) -> float:
    """The threshold that flags at most ``max_false_positive`` of the benign *prompts* the rules
    pass (their out-of-fold ``scores``): just above the score of the benign prompt at that rank
    (0.5 when the allowance covers them all). Injections (``y`` 1), texts a rule already flags
    and the texts that are not prompts (``prompt`` False: the claims) do not count, whatever
    they score."""
    benign = np.sort(scores[(y == 0) & ~rules & prompt])[::-1]
    allowed = int(max_false_positive * len(benign))
    return float(benign[allowed]) + 1e-6 if allowed < len(benign) else 0.5


class Command(BaseCommand):
    help = "Train the prompt-injection classifier (knowledge/injection_model.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, default=settings.BASE_DIR / DEFAULT_DATA)
        parser.add_argument("--claims", type=str, default=str(settings.BASE_DIR / DEFAULT_CLAIMS))
        parser.add_argument("--max-false-positive", type=float, default=0.02)
        parser.add_argument("--output", type=Path, default=MODEL_PATH)

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [json.loads(line) for line in options["data"].open(encoding="utf-8")]
        claims_path = Path(options["claims"]) if options["claims"] else None
        claims = [r["query"] for r in read_jsonl(claims_path)] if claims_path else []
        train = [r for r in rows if r["split"] == "train"] + [
            {"text": text, "label": 0, "split": "train"} for text in benign_questions("tune")
        ]
        train += roleplay_questions("tune")
        # The claims come last: the threshold is chosen among the prompts before them.
        prompts = len(train)
        train += [{"text": text, "label": 0, "split": "train"} for text in claims]
        test = [r for r in rows if r["split"] == "test"]
        texts = [r["text"] for r in train]
        y = np.array([float(r["label"]) for r in train])
        rules = np.array([rules_flag(t) for t in texts])
        prompt = np.arange(len(y)) < prompts
        folds = np.random.default_rng(7).integers(0, 5, len(y))
        splits = []  # each fold's (fitted-on, held-out) matrices, made once for every L2
        for fold in range(5):
            fit_texts = [t for t, f in zip(texts, folds, strict=True) if f != fold]
            held_texts = [t for t, f in zip(texts, folds, strict=True) if f == fold]
            vectorizer = Vectorizer.fit(fit_texts)
            splits.append((vectorizer.transform(fit_texts), vectorizer.transform(held_texts)))
        best: tuple[float, float, float] | None = None  # (recall, l2, threshold)
        for l2 in (1e-3, 3e-4, 1e-4, 3e-5, 1e-5):
            scores = np.zeros(len(y))
            for fold, (fitted, held) in enumerate(splits):
                w, b = fit_logistic(fitted, y[folds != fold], l2=l2)
                scores[folds == fold] = sigmoid(held @ w + b)
            threshold = choose_threshold(
                scores,
                y,
                rules=rules,
                prompt=prompt,
                max_false_positive=options["max_false_positive"],
            )
            recall = float(((scores >= threshold) | rules)[y == 1].mean())
            claimed = int((scores[~prompt] >= threshold).sum())
            self.stdout.write(
                f"l2={l2}: cross-validated recall {recall:.3f} at {threshold:.3f}"
                f" (claims flagged: {claimed}/{len(claims)})"
            )
            if best is None or recall > best[0]:
                best = (recall, l2, threshold)
        if best is None:  # pragma: no cover - the loop above always runs
            raise RuntimeError("no model was fitted")
        recall, l2, threshold = best
        vectorizer = Vectorizer.fit(texts)
        w, b = fit_logistic(vectorizer.transform(texts), y, l2=l2)
        test_texts = [r["text"] for r in test]
        yt = np.array([r["label"] for r in test])
        flagged = (sigmoid(vectorizer.transform(test_texts) @ w + b) >= threshold) | np.array(
            [rules_flag(t) for t in test_texts]
        )
        metrics = {
            "train_cv_recall": round(recall, 3),
            "test_recall": round(float(flagged[yt == 1].mean()), 3),
            "test_false_positive_rate": round(float(flagged[yt == 0].mean()), 3),
        }
        model = {
            "kind": "char_ngram_tfidf_logistic_regression",
            "ngrams": "char_wb 2..5, sublinear tf, smoothed idf, min_df 2, L2-normalised",
            "trained_on": "deepset/prompt-injections split=train + benign_questions.jsonl split=tune"
            + " + roleplay_questions.jsonl split=tune"
            + (f" + {len(claims)} queries of {claims_path.name}" if claims_path else ""),
            "trained_at": dt.datetime.now(dt.UTC).date().isoformat(),
            "l2": l2,
            "threshold": round(threshold, 6),
            "metrics": metrics,
            **to_json(vectorizer, w, b),
        }
        options["output"].write_text(json.dumps(model, ensure_ascii=False, sort_keys=True) + "\n")
        self.stdout.write(json.dumps(metrics))

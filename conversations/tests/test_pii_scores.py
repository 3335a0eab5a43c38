"""The PII part of ``make eval-guardrails``: our number and CJK address set, and its scores."""

from __future__ import annotations

from collections import Counter

from conversations.management.commands._pii_scores import NUMBERS, numbers_scores
from knowledge.management.commands.eval_retrieval import read_jsonl


def test_the_number_set_labels_values_that_its_texts_hold_and_splits_it_in_halves():
    rows = read_jsonl(NUMBERS)
    assert Counter(row["split"] for row in rows) == {"tune": 69, "heldout": 69}
    for row in rows:
        assert row["kind"] in {"phone", "benign", "email"}
        assert bool(row["pii"]) == (row["kind"] != "benign")
        for entity, value in row["pii"]:
            assert entity in {"PHONE", "EMAIL"} and value in row["text"]


def test_number_scores_count_exact_masks_overlaps_and_false_phones():
    rows = [
        {"split": "tune", "text": "Call 020 7946 0958 now.", "pii": [["PHONE", "020 7946 0958"]]},
        {
            "split": "tune",
            "text": "Ask 张伟@例子.中国 or jo@example.org",
            "pii": [["EMAIL", "jo@example.org"]],
        },
        {"split": "heldout", "text": "Order 415-555-0198 shipped", "pii": []},
    ]
    scores = numbers_scores(rows)
    tune, held = scores["tune"], scores["heldout"]
    assert (tune["n"], tune["exact"], tune["benign_phone"]) == (2, 1, 0)
    assert tune["counts"]["PHONE", "gold"] == tune["counts"]["PHONE", "found"] == 1
    # the unlabelled address is a predicted EMAIL span that overlaps no label
    assert (tune["counts"]["EMAIL", "predicted"], tune["counts"]["EMAIL", "correct"]) == (2, 1)
    assert (held["n"], held["exact"], held["benign_phone"]) == (1, 0, 1)

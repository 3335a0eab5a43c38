"""``train_injection``'s threshold choice (``choose_threshold``), pinned on small synthetic
out-of-fold scores: the threshold is set among the benign *prompts* the rules pass, never
among the injections, the texts a rule already refuses or the claims (texts that are not
prompts), whatever those score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knowledge.management.commands.train_injection import choose_threshold


def _pool(
    benign_prompts: Sequence[float],
    *,
    injections: Sequence[float] = (),
    rule_flagged: Sequence[float] = (),
    claims: Sequence[float] = (),
) -> dict[str, np.ndarray]:
    """Scores with their labels, rule verdicts and prompt marks, in train_injection's order
    (the prompts first, the claims last)."""
    scores = [*benign_prompts, *injections, *rule_flagged, *claims]
    y = [0] * len(benign_prompts) + [1] * len(injections) + [0] * len(rule_flagged)
    y += [0] * len(claims)
    rules = [False] * (len(benign_prompts) + len(injections)) + [True] * len(rule_flagged)
    rules += [False] * len(claims)
    prompt = [True] * (len(scores) - len(claims)) + [False] * len(claims)
    return {
        "scores": np.array(scores),
        "y": np.array(y, dtype=float),
        "rules": np.array(rules),
        "prompt": np.array(prompt),
    }


HUNDRED = [i / 100 for i in range(100)]  # 0.00 .. 0.99, shuffled below


def _choose(pool: dict[str, np.ndarray], max_false_positive: float = 0.02) -> float:
    return choose_threshold(
        pool["scores"],
        pool["y"],
        rules=pool["rules"],
        prompt=pool["prompt"],
        max_false_positive=max_false_positive,
    )


def test_the_threshold_flags_the_allowed_share_of_benign_prompts_and_no_more() -> None:
    order = np.random.default_rng(3).permutation(100)
    threshold = _choose(_pool([HUNDRED[i] for i in order]))
    # 2% of 100 prompts: the two highest (0.99, 0.98) are flagged, the third (0.97) is not.
    assert threshold == 0.97 + 1e-6
    assert sum(s >= threshold for s in HUNDRED) == 2


def test_claims_rule_flagged_texts_and_injections_do_not_move_the_threshold() -> None:
    high = [0.999] * 50
    pool = _pool(HUNDRED, injections=high, rule_flagged=high, claims=high)
    assert _choose(pool) == 0.97 + 1e-6
    # Claims that score low do not lower it either (counted, they would make 150 benign texts:
    # three allowed, the threshold above 0.98, or among the claims' scores).
    assert _choose(_pool(HUNDRED, claims=[0.0] * 50)) == 0.97 + 1e-6


def test_an_allowance_that_covers_every_benign_prompt_gives_one_half() -> None:
    assert _choose(_pool([0.2, 0.9]), max_false_positive=1.0) == 0.5
    # Ten prompts at 10%: one may be flagged.
    assert _choose(_pool(HUNDRED[::10]), max_false_positive=0.1) == 0.8 + 1e-6

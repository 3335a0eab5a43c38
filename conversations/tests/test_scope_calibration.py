"""The scope-threshold calibration used by ``make eval-guardrails``: chosen on the tune half."""

from __future__ import annotations

from conversations.management.commands._scope_calibration import Signals, calibrate, rates


def item(category: str, similarity: float, evidence: float, split: str = "tune") -> Signals:
    return Signals(category, split, similarity, evidence, refused_anyway=False)


def test_calibration_refuses_the_most_without_refusing_on_topic_questions():
    items = [
        item("on_topic", 0.30, 0.10),  # admitted by its topic similarity only
        item("on_topic", 0.12, 0.40),  # admitted by its evidence only
        item("off_topic", 0.20, 0.10),
        item("off_topic", 0.05, 0.30),
        item("near_topic", 0.26, 0.38),
        # Held-out items never influence the choice, however they would pull it.
        *[item("on_topic", 0.01, 0.01, "heldout") for _ in range(5)],
    ]
    # On-topic: topic <= 0.30 (or evidence <= 0.10) and evidence <= 0.40 (or topic <= 0.12).
    # Refusing the near-topic one as well takes topic > 0.26 and evidence > 0.38.
    topic, evidence = calibrate(items)
    assert (topic, evidence) == (0.28, 0.4)  # of (0.28 | 0.30, 0.40): the more permissive
    tune = rates([s for s in items if s.split == "tune"], topic, evidence)
    assert tune == {"on_topic": (0, 2), "off_topic": (2, 2), "near_topic": (1, 1)}


def test_ties_go_to_the_more_permissive_pair():
    items = [item("on_topic", 0.50, 0.50), item("off_topic", 0.05, 0.05)]
    assert calibrate(items) == (0.1, 0.1)


def test_the_blocked_threshold_is_the_middle_of_those_that_block_no_allowed_tune_question():
    from conversations.management.commands._scope_calibration import (
        BlockedSignal,
        blocked_calibrate,
    )

    items = [
        BlockedSignal("blocked_named", "tune", 1.0),
        BlockedSignal("blocked_paraphrase", "tune", 0.41),
        BlockedSignal("blocked_paraphrase", "tune", 0.12),  # caught by no safe threshold
        BlockedSignal("on_topic", "tune", 0.33),
        BlockedSignal("allowed_near", "tune", 0.35),
        BlockedSignal("on_topic", "heldout", 0.55),  # held out: never pulls the choice
        BlockedSignal("on_topic", "heldout", 0.37),
    ]
    # 0.36 .. 0.41 block no allowed tune question and both caught ones: the middle is 0.38, not
    # 0.36, which sits 0.01 above the allowed question closest to a blocked topic.
    assert blocked_calibrate(items) == 0.38
    assert [s.blocked(0.38) for s in items] == [True, True, False, False, False, True, False]


def test_blocked_signals_come_from_the_pipelines_own_check(db):
    from conversations.management.commands._scope_calibration import blocked_signal

    topics = ["pricing", "competitors"]
    named = blocked_signal({"category": "blocked_named", "split": "tune",
                            "text": "What are the prices?"}, topics, [], 1)  # fmt: skip
    other = blocked_signal({"category": "on_topic", "split": "tune",
                            "text": "How do I rotate an API key?"}, topics, [], 1)  # fmt: skip
    assert named.closeness == 1.0 and named.blocked(0.99)
    assert -1.0 <= other.closeness < 0.5 and not other.blocked(0.5)
    # A phrasing's similarity, as the check compares it: only where the scope's own topics are
    # further from the question (0.40 from the phrasing; the label "competitors" is 0.09).
    # Not "better than this": what that asks about is judged too (guardrails.ASKED_ABOUT).
    phrased = ["competitors: is another product better than this one"]
    question = {"category": "blocked_paraphrase", "split": "tune",
                "text": "Is Zendesk a better choice than this service?"}  # fmt: skip
    assert blocked_signal(question, phrased, ["API keys"], 1).blocked(0.33)
    assert not blocked_signal(question, phrased, ["a better service"], 1).blocked(0.33)


def test_the_unknown_name_threshold_is_the_lowest_that_refuses_the_most_tune_questions():
    from conversations.management.commands._scope_calibration import unknown_name_calibrate

    def named(category: str, similarity: float, split: str = "tune") -> Signals:
        return Signals(category, split, similarity, 0.9, refused_anyway=False, unknown=True)

    items = [
        named("off_topic", 0.16),  # admitted by its passages before: refused from 0.18
        named("near_topic", 0.29),  # refused from 0.30
        named("on_topic", 0.45),  # admitted below 0.46
        item("off_topic", 0.05, 0.9),  # names nothing: its evidence admits it at any threshold
        named("off_topic", 0.55, "heldout"),  # never chooses
    ]
    assert unknown_name_calibrate(items, 0.14, 0.24) == 0.3


def test_the_unknown_word_threshold_is_the_middle_of_those_refusing_no_on_topic_question():
    from conversations.management.commands._scope_calibration import unknown_word_calibrate

    def worded(category: str, evidence: float, split: str = "tune") -> Signals:
        return Signals(category, split, 0.20, evidence, refused_anyway=False, unknown_word=True)

    items = [
        worded("on_topic", 0.37),  # refused above 0.37
        worded("off_topic", 0.28),  # refused above 0.28
        worded("off_topic", 0.50),  # refused by no threshold that spares the on-topic one
        item("off_topic", 0.20, 0.30),  # no unknown word: admitted at any threshold
        worded("on_topic", 0.21, "heldout"),  # held out: never pulls the choice
    ]
    # 0.29 .. 0.37 refuse the first off-topic question and no on-topic one: the middle, 0.33.
    assert unknown_word_calibrate(items) == 0.33
    # An on-topic question refused at every threshold (one whose best passage is weaker than
    # the grid's lowest) no longer stops the calibration: the choice is made among the
    # thresholds that refuse no more on-topic questions than that.
    items.append(Signals("on_topic", "tune", 0.20, 0.19, refused_anyway=False, unknown_word=True))
    assert unknown_word_calibrate(items) == 0.33

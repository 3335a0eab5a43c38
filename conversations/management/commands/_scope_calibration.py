"""Calibration of the scope thresholds for ``manage.py eval_guardrails`` (part ii).

Each question's signals are computed once through the chat pipeline's own functions (the
injection detector, the blocked-topic check, retrieval, the topic similarity); a grid over
``SCOPE_TOPIC_THRESHOLD`` x ``SCOPE_EVIDENCE_THRESHOLD`` is then scored without re-running
anything. The pair is chosen on the *tune* half only: the most off- and near-topic refusals with
at most ``MAX_ON_TOPIC_FALSE`` of on-topic questions refused; ties go to the more permissive
pair. The held-out half is reported at the chosen pair and at the configured defaults.

``SCOPE_UNKNOWN_NAME_THRESHOLD`` (questions that name something no document mentions) on the
tune half at the configured pair: the lowest with the most off- and near-topic refusals.

``SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD`` (questions with another word no document holds) on the
tune half at the configured thresholds: of those that refuse no on-topic question and the most
off-topic ones, the middle one.

``SCOPE_BLOCKED_THRESHOLD`` likewise, on ``blocked_questions.jsonl`` and the on-topic set: of
the thresholds that block no allowed question of the tune half and the most blocked ones, the
middle one (the lowest sat at the edge of the tune half's on-topic questions, and blocked a
held-out one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.test import override_settings

from bots.models import Bot
from conversations.guardrails import blocked_topic, out_of_scope, scope_topics, unknown_words
from knowledge.injection import detect
from knowledge.retrieval import embed_query, search, search_space_for_bot

MAX_ON_TOPIC_FALSE = 0.03
TOPIC_GRID = [round(0.10 + 0.02 * i, 2) for i in range(26)]  # 0.10 .. 0.60
EVIDENCE_GRID = [round(0.10 + 0.02 * i, 2) for i in range(31)]  # 0.10 .. 0.70


@dataclass(frozen=True)
class Signals:
    category: str  # on_topic | off_topic | near_topic
    split: str  # tune | heldout
    similarity: float  # to the scope's description or closest allowed topic
    evidence: float  # the best retrieved passage's relevance
    refused_anyway: bool  # by a check the thresholds do not touch
    unknown: bool = False  # it names something no document mentions (guardrails.unknown_words)
    unknown_word: bool = False  # another of its words no document holds

    def refused(self, topic: float, evidence: float) -> bool:
        if self.unknown:  # admitted by its closeness to the topics alone
            admitted = self.similarity >= settings.SCOPE_UNKNOWN_NAME_THRESHOLD
        elif self.unknown_word:
            admitted = (
                self.similarity >= settings.SCOPE_UNKNOWN_NAME_THRESHOLD
                or self.evidence >= settings.SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD
            )
        else:
            admitted = self.similarity >= topic or self.evidence >= evidence
        return self.refused_anyway or not admitted


def signals(bot: Bot, question: dict[str, str]) -> Signals:
    scope = bot.scope
    if scope is None:
        raise ValueError("the demo bot has a scope")
    text = question["text"]
    vector, _ = embed_query(text)
    space = search_space_for_bot(bot)
    hits = search(space, query=text, query_vector=vector, top_k=bot.top_k)
    evidence = max((hit.relevance for hit in hits), default=0.0)
    topics = scope_topics(scope.description, scope.allowed_topics)
    unknown = unknown_words(text, space=space, scope_texts=topics) if topics else None
    similarity = out_of_scope(
        vector=vector, topics=topics, evidence=evidence, tenant_id=scope.tenant_id
    ).topic_similarity
    no_context = not any(h.relevance >= scope.min_relevance for h in hits)
    refused_anyway = (
        detect(text).flagged
        or blocked_topic(
            question=text,
            vector=vector,
            topics=scope.blocked_topics,
            allowed=topics,
            tenant_id=scope.tenant_id,
        )
        is not None
        or (no_context and not scope.answer_without_context)
    )
    return Signals(question["category"], question["split"], similarity or 0.0, evidence,
                   refused_anyway, bool(unknown and unknown.names),
                   bool(unknown and unknown.words))  # fmt: skip


def rates(items: Iterable[Signals], topic: float, evidence: float) -> dict[str, tuple[int, int]]:
    """category → (refused, total)."""
    out: dict[str, tuple[int, int]] = {}
    for s in items:
        refused, total = out.get(s.category, (0, 0))
        out[s.category] = (refused + s.refused(topic, evidence), total + 1)
    return out


def calibrate(items: list[Signals]) -> tuple[float, float]:
    tune = [s for s in items if s.split == "tune"]
    best: tuple[int, float, float, float] | None = None  # (refusals, -(t + e), t, e)
    for topic in TOPIC_GRID:
        for evidence in EVIDENCE_GRID:
            r = rates(tune, topic, evidence)
            on_refused, on_total = r.get("on_topic", (0, 0))
            if on_total and on_refused / on_total > MAX_ON_TOPIC_FALSE:
                continue
            refusals = r.get("off_topic", (0, 0))[0] + r.get("near_topic", (0, 0))[0]
            key = (refusals, -(topic + evidence), topic, evidence)
            if best is None or key > best:
                best = key
    if best is None:
        raise ValueError("no threshold pair keeps on-topic false refusals within the limit")
    return best[2], best[3]


UNKNOWN_NAME_GRID = [round(0.14 + 0.02 * i, 2) for i in range(24)]  # 0.14 .. 0.60


def unknown_name_calibrate(items: list[Signals], topic: float, evidence: float) -> float:
    """``SCOPE_UNKNOWN_NAME_THRESHOLD`` on the tune half, the other two at ``topic`` and
    ``evidence``: the lowest one with the most off- and near-topic refusals and at most
    ``MAX_ON_TOPIC_FALSE`` of on-topic questions refused."""
    tune = [s for s in items if s.split == "tune"]
    best: tuple[int, float] | None = None  # (refusals, -threshold)
    for threshold in UNKNOWN_NAME_GRID:
        with override_settings(SCOPE_UNKNOWN_NAME_THRESHOLD=threshold):
            r = rates(tune, topic, evidence)
        on_refused, on_total = r.get("on_topic", (0, 0))
        if on_total and on_refused / on_total > MAX_ON_TOPIC_FALSE:
            continue
        key = (r.get("off_topic", (0, 0))[0] + r.get("near_topic", (0, 0))[0], -threshold)
        if best is None or key > best:
            best = key
    if best is None:
        raise ValueError("no threshold keeps on-topic false refusals within the limit")
    return -best[1]


UNKNOWN_WORD_GRID = [round(0.20 + 0.01 * i, 2) for i in range(41)]  # 0.20 .. 0.60


def unknown_word_calibrate(items: list[Signals]) -> float:
    """``SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD`` on the tune half, the others as configured: of
    the thresholds at which the fewest tune-half on-topic questions are refused (none, unless
    one is refused at every threshold) and the most tune-half off-topic ones are, the middle
    one (as ``blocked_calibrate``: as far from the on-topic question with an unknown word and
    the weakest passage as from the off-topic one with the strongest)."""
    tune = [s for s in items if s.split == "tune"]
    on = [s for s in tune if s.category == "on_topic"]
    off = [s for s in tune if s.category == "off_topic"]
    refused: dict[float, tuple[int, int]] = {}  # threshold → (on-topic refused, off-topic)
    for threshold in UNKNOWN_WORD_GRID:
        with override_settings(SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD=threshold):
            topic, evidence = settings.SCOPE_TOPIC_THRESHOLD, settings.SCOPE_EVIDENCE_THRESHOLD
            refused[threshold] = (
                sum(s.refused(topic, evidence) for s in on),
                sum(s.refused(topic, evidence) for s in off),
            )
    fewest = min(on_refused for on_refused, _ in refused.values())
    caught = {t: off_refused for t, (on_refused, off_refused) in refused.items()
              if on_refused == fewest}  # fmt: skip
    best = [t for t in caught if caught[t] == max(caught.values())]
    return best[(len(best) - 1) // 2]


# --- blocked topics: SCOPE_BLOCKED_THRESHOLD -------------------------------------------------

BLOCKED_GRID = [round(0.20 + 0.01 * i, 2) for i in range(41)]  # 0.20 .. 0.60
ALLOWED = ("allowed_near", "on_topic")  # questions a blocked-topic check must let through


@dataclass(frozen=True)
class BlockedSignal:
    category: str  # blocked_named | blocked_paraphrase | allowed_near | on_topic
    split: str
    closeness: float  # 1.0 when the question names a topic, else its best topic similarity

    def blocked(self, threshold: float) -> bool:
        return self.closeness >= threshold


def blocked_signal(
    question: dict[str, str],
    topics: list[str],
    allowed: list[str],
    tenant_id: object,
    unknown_names: Sequence[str] = (),
) -> BlockedSignal:
    """Through the pipeline's own check, with every threshold admitted: its verdict carries
    1.0 for a named topic, else the closest topic's similarity, which is what the configured
    threshold is compared with (a phrasing's only where the scope's own topics are further).
    ``unknown_names``: the names no document holds, as the pipeline finds them
    (:func:`conversations.guardrails.unknown_words`)."""
    vector, _ = embed_query(question["text"])
    with override_settings(SCOPE_BLOCKED_THRESHOLD=-1.0):
        verdict = blocked_topic(
            question=question["text"], vector=vector, topics=topics, allowed=allowed,
            unknown_names=unknown_names, tenant_id=tenant_id,
        )  # fmt: skip
    closeness = verdict.topic_similarity if verdict is not None else -1.0
    return BlockedSignal(question["category"], question["split"], float(closeness or 0.0))


def blocked_calibrate(items: list[BlockedSignal]) -> float:
    """Of the thresholds at which no tune-half question of ``ALLOWED`` is blocked and the most
    tune-half blocked questions are, the middle one: as far from the on-topic question closest
    to a blocked topic as from the paraphrase furthest from one. The lowest such threshold (0.30
    on our set) sat 0.02 above a tune-half on-topic question and blocked a held-out one ("Which
    headers tell me my remaining rate limit?", 0.32 from "pricing")."""
    tune = [s for s in items if s.split == "tune"]
    allowed = [s for s in tune if s.category in ALLOWED]
    blocked = [s for s in tune if s.category not in ALLOWED]
    safe = [t for t in BLOCKED_GRID if not any(s.blocked(t) for s in allowed)]
    if not safe:
        return BLOCKED_GRID[-1]
    caught = {t: sum(s.blocked(t) for s in blocked) for t in safe}
    best = [t for t in safe if caught[t] == max(caught.values())]
    return best[(len(best) - 1) // 2]

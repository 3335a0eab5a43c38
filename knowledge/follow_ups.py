"""Follow-up questions that name no subject of their own ("Can you explain that in more
detail?"): such a question means what the conversation's previous user message was about, so
chat searches and judges that message, steered by the follow-up (conversations.chat), and
``make eval FOLLOW_UP=1`` measures it the same way."""

from __future__ import annotations

import re
from collections.abc import Sequence

from knowledge.retrieval import FollowUp

# A follow-up that names no subject of its own ("Can you explain that in more detail?") is made
# only of these: function words and the vocabulary of asking for more (English, German).
FOLLOW_UP_WORDS = frozenset("""
    a an the and or but so then than that this these those it its they them their there here
    he she him her his we us our you your i me my is are was were be been being am do does did
    done have has had can could would should will shall may might must what which who whom whose
    why how when where whether if of to in on at by for from with about into after before again
    more most some any all each other else such same just also too very really please ok okay
    yes no not well now exactly always ever still only even one much many lot bit s t re ve ll
    d m don doesn isn aren didn wasn tell say said says explain explained elaborate clarify
    expand repeat mean means meant meaning detail details detailed example examples instance
    sure certain true right correct wrong case happen happens happened next work works know
    think go goes continue simpler simply simple short shorter summary summarize written write
    show point part thing things way reason
    und oder aber also dann das dies diese dieser es er sie wir ihr du ich mir mich dir dich uns
    ist sind war waren sein hat haben kann kannst könnte könntest würde wird werden was wie
    warum wieso weshalb wo wann welche welcher welches der die den dem des ein eine einen einem
    einer im am auf mit von zu zum zur für über nach noch mehr genau genauer bitte ja nein nicht
    doch mal sehr heißt bedeutet bedeuten erklären erkläre erklär erzähl erzähle sagen beispiel
    sicher richtig stimmt weiter
    """.split())  # noqa: SIM905 - a word list reads better as one string
_ANY_WORD = re.compile(r"\w+")


def names_no_subject(question: str) -> bool:
    """Whether every word of a question is a function word or a way of asking for more, so
    that it means what the conversation's previous question was about. A follow-up that names
    anything ("... for lasagna recipes too?") has a subject of its own."""
    words = _ANY_WORD.findall(question.lower())
    return bool(words) and all(word in FOLLOW_UP_WORDS for word in words)


def what_to_search(
    question: str, vector: Sequence[float], previous: FollowUp | None
) -> tuple[str, Sequence[float], FollowUp | None]:
    """The text, vector and steering a question is searched (and judged) with, given the
    previous user message as ``previous`` (its weight ``RETRIEVAL_HISTORY_WEIGHT``): a question
    that names nothing is searched as that message, steered by the question; any other question
    as itself, steered by that message. No history, or weight 0: the question alone."""
    if previous is None or previous.weight <= 0:
        return question, vector, None
    if names_no_subject(question):
        return previous.text, previous.vector, FollowUp(question, vector, previous.weight)
    return question, vector, previous

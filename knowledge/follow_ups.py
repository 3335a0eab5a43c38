"""Follow-up questions that name no subject of their own ("Can you explain that in more
detail?"), or point back at the previous one with a pronoun and name one word of their own
("How do I configure it?"): such a question means what the conversation's previous user message
was about, so chat searches and judges that message, steered by the follow-up
(conversations.chat), and ``make eval FOLLOW_UP=1`` measures it the same way."""

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
# Words that point back at what the previous message was about ("How do I configure it?").
# Not "there" ("Is there pagination?" asks about pagination) nor German "das", an article too
# ("Erzähl mir mehr über das Mittelalter." has a subject of its own).
REFERRING_WORDS = frozenset("""
    it its they them their this that these those he she him his her
    es sie ihn ihm ihr dies diese dieser dieses
    """.split())  # noqa: SIM905 - a word list reads better as one string
# A question that points back and names one word of its own ("When was it released?") is
# about the previous message's subject; two words of its own ("Is that also true for cats
# and dogs?") may be a new subject, and are judged as one.
REFERRING_OWN_WORDS = 1
# How much such a question's own word counts against the subject it points back at, when the
# subject is searched: as much (an ordinary follow-up counts RETRIEVAL_HISTORY_WEIGHT).
REFERRING_WEIGHT = 1.0


def names_no_subject(question: str) -> bool:
    """Whether every word of a question is a function word or a way of asking for more, so
    that it means what the conversation's previous question was about. A follow-up that names
    anything ("... for lasagna recipes too?") has a subject of its own."""
    words = _ANY_WORD.findall(question.lower())
    return bool(words) and all(word in FOLLOW_UP_WORDS for word in words)


def refers_back(question: str) -> bool:
    """Whether a question points back at the previous message's subject with a pronoun and
    names no more than :data:`REFERRING_OWN_WORDS` word of its own ("How do I configure it?",
    "When was it released?"): alone, it searches for "configure" and finds whatever configures
    something."""
    words = _ANY_WORD.findall(question.lower())
    own = [word for word in words if word not in FOLLOW_UP_WORDS]
    return 0 < len(own) <= REFERRING_OWN_WORDS and any(w in REFERRING_WORDS for w in words)


def what_to_search(
    question: str, vector: Sequence[float], previous: FollowUp | None
) -> tuple[str, Sequence[float], FollowUp | None]:
    """The text, vector and steering a question is searched (and judged) with, given the
    previous user message as ``previous`` (its weight ``RETRIEVAL_HISTORY_WEIGHT``): a question
    that names nothing is searched as that message, steered by the question; any other question
    as itself, steered by that message. One that points back at it and names a word of its own
    (:func:`refers_back`) is searched as that message too, steered by the question as much as
    by the message. No history, or weight 0: the question alone."""
    if previous is None or previous.weight <= 0:
        return question, vector, None
    if names_no_subject(question):
        return previous.text, previous.vector, FollowUp(question, vector, previous.weight)
    if refers_back(question):
        return previous.text, previous.vector, FollowUp(question, vector, REFERRING_WEIGHT)
    return question, vector, previous

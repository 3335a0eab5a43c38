"""For streamed output: how much of the end of a text may still become (part of) a span."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .card import _CARD_CUE
from .email import _IDN_BEFORE_LOCAL, _IDN_LETTER, _NO_SPACE_LETTER, _NO_SPACE_LOCAL
from .email_written import _AT_WORDS, _BEFORE_LOCAL, _CLOSE, _DOT_WORDS, _EMAIL_CUE, _OPEN
from .fold import _fold
from .phone import _LOCAL_NUMBER_END, _PHONE_CUE, _PHONE_LABEL_AFTER
from .scanner import find
from .spans import CUE_WINDOW, MAX_HOLD, Span
from .ssn import _SSN_CUE

_SEPARATOR_WORDS = [*_AT_WORDS.split("|"), *_DOT_WORDS.split("|"), "point", "punt"]
# Every start of one of them, longest first: "a", "at", "d", "do", "p", ...
_WORD_STARTS = "|".join(
    sorted({w[:i] for w in _SEPARATOR_WORDS for i in range(1, len(w) + 1)}, key=len, reverse=True)
)


def _written_hold(char: str, local: str, alnum: str) -> str:
    """A pattern for every prefix of a written-out address (and more): a local part of
    ``local`` ending in ``alnum``, then labels of ``char`` after separators, then the start of
    a separator ("john ", "john a", "john at example (d"). It is tried only where a local part
    starts, and is possessive: no backtracking."""
    starts = _WORD_STARTS
    inside = f"(?:{_AT_WORDS}|{_DOT_WORDS}|point|punt|@|\\.)"
    separator = (
        rf"(?:[ ]{{1,3}}(?:{_AT_WORDS}|{_DOT_WORDS})[ ]{{1,3}}"
        rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}{inside}[ ]{{0,2}}{_CLOSE}[ ]{{0,3}}"
        r"|[ ]{0,3}@[ ]{0,3}|\.)"
    )
    begun = (
        rf"(?:[ ]{{1,3}}(?:(?:{starts})[ ]{{0,3}})?"
        rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}(?:(?:{starts}|@|\.)[ ]{{0,2}})?|[ ]{{0,3}}@[ ]{{0,3}})"
    )
    return (
        rf"(?<!{local}){local}{{1,64}}+(?<={alnum})(?:{separator}{char}{{1,63}}+){{0,9}}"
        rf"(?:{separator}|{begun})?"
    )


# A suffix matching this may still grow into a span: each branch accepts every prefix of what
# the finders above can match (and more; holding too much costs latency, never leaks). A context
# word is held with what follows it, up to the point where it could no longer count.
_HOLD_CUED = (  # a context word, and what may follow it before the value it announces
    r"(?:(?:"
    + _PHONE_CUE.pattern
    + "|"
    + _SSN_CUE.pattern
    + "|"
    + _EMAIL_CUE.pattern
    + r"|\bsocial(?:\s{1,3}[a-z]{0,8})?)"
    rf"[^0-9]{{0,{CUE_WINDOW}}}"
    + "|"
    + _CARD_CUE.pattern  # needed by a number starting with 0 only (in the folded copy too)
    + rf"[^0-9\x80-\U0010ffff]{{0,{CUE_WINDOW}}}(?![1-9]))"
)
_HOLD_EMAIL = r"[A-Za-z0-9._%+\-]{1,64}(?:@[A-Za-z0-9.\-]{0,253})?"
_HOLD_IBAN_SPELLED = (  # an IBAN one character at a time
    r"(?<![A-Za-z0-9_])[A-Za-z](?:[ \-][A-Za-z](?:[ \-][0-9](?:[ \-][0-9]"
    r"(?:[ \-][A-Za-z0-9]){0,30}+)?)?)?[ \-]?"
)
_HOLD_PHONE = (  # phone, card, SSN, IPv4, and a phone label after the digits
    r"[+(0-9][0-9()\ .\-/]{0,40}(?:\ ?(?:x|e|ex|ext\.?)?\ ?[0-9]{0,6})?[A-Za-z\xe9\xf3]{0,16}"
)
_HOLD_IBAN = r"(?<![A-Za-z0-9_])[A-Za-z]{2}[0-9]{2}(?:\ ?[A-Za-z0-9]){0,30}\ ?"
_HOLD_IPV6 = r"[\[0-9A-Fa-f:.]{1,45}"
_HOLD_BRANCHES = (_HOLD_EMAIL, _HOLD_IBAN_SPELLED, _HOLD_PHONE, _HOLD_IBAN, _HOLD_IPV6)
_HOLD_FLAGS = re.ASCII | re.VERBOSE | re.IGNORECASE
_HOLD = re.compile(
    _HOLD_CUED + "?(?:" + "|".join(_HOLD_BRANCHES) + r")?\Z",
    _HOLD_FLAGS,
)

# The same search, cheaper where no context word is: _HOLD tried at every position cost a
# streamed piece more than the rest of the hold (its context words' alternation at each one).
# Without a context word from where it searches, the leftmost match of _HOLD is the leftmost of
# its branches' (each must reach the end), so each branch is searched alone, and the e-mail and
# IPv6 ones only from where the characters they can hold run to the end.
_HOLD_CONTEXT_WORD = re.compile(
    "|".join(
        (_PHONE_CUE.pattern, _SSN_CUE.pattern, _EMAIL_CUE.pattern, r"\bsocial", _CARD_CUE.pattern)
    ),
    _HOLD_FLAGS,
)
_HOLD_EMAIL_END = re.compile(f"(?:{_HOLD_EMAIL})\\Z", _HOLD_FLAGS)
_HOLD_EMAIL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-@"
_HOLD_IPV6_END = re.compile(f"(?:{_HOLD_IPV6})\\Z", _HOLD_FLAGS)
_HOLD_IPV6_CHARS = "[0123456789ABCDEFabcdef:."
_HOLD_OTHER_ENDS = tuple(
    re.compile(f"(?:{branch})\\Z", _HOLD_FLAGS)
    for branch in (_HOLD_IBAN_SPELLED, _HOLD_PHONE, _HOLD_IBAN)
)


def _hold_start(text: str, floor: int) -> int:
    """Where :data:`_HOLD` first matches ``text`` from ``floor`` (it always does, at the end
    at the latest)."""
    if _HOLD_CONTEXT_WORD.search(text, floor) is not None:
        match = _HOLD.search(text, floor)
        return match.start() if match else len(text)
    return _hold_branches(text, floor, _HOLD_OTHER_ENDS)


def _hold_branches(text: str, floor: int, others: tuple[re.Pattern[str], ...]) -> int:
    """Where the first of :data:`_HOLD`'s branches matches ``text`` from ``floor``, where no
    context word is: the e-mail and IPv6 ones, and ``others`` of the rest."""
    best = len(text)
    for pattern, chars in (
        (_HOLD_EMAIL_END, _HOLD_EMAIL_CHARS),
        (_HOLD_IPV6_END, _HOLD_IPV6_CHARS),
    ):
        match = pattern.search(text, max(floor, len(text.rstrip(chars))))
        if match is not None and match.start() < best:
            best = match.start()
    for pattern in others:
        match = pattern.search(text, floor)
        if match is not None and match.start() < best:
            best = match.start()
    return best


# _HOLD's e-mail branch with _IDN_LETTER for its letters and digits.
_HOLD_IDN_EMAIL = re.compile(
    rf"(?:{_IDN_LETTER}|[_.%+\-]){{1,64}}(?:@(?:{_IDN_LETTER}|[.\-]){{0,253}})?\Z"
)
# An address with letters of a script written without spaces (:func:`_no_space_emails`): the
# run of letters an "@" may still follow (the local part's 21 characters at most), then the
# address while its domain forms. Tried only on text with such a letter.
_HOLD_NO_SPACE_EMAIL = re.compile(
    rf"[\w.%+\-]{{1,{_NO_SPACE_LOCAL}}}(?:@(?:[^\W_]|[.\-]){{0,253}})?\Z"
)
# An address written out ("john at example dot com"): held by its own pattern, tried only where
# one may start (:func:`_written_hold_start`), in ASCII text and in the folded copy.
_HOLD_WRITTEN = re.compile(
    _written_hold(r"[A-Za-z0-9\-]", r"[A-Za-z0-9._%+\-]", "[A-Za-z0-9]") + r"\Z",
    re.ASCII | re.IGNORECASE,
)
# A separator begun right at the end ("john ", "john a", "john (d", "john @").
_SEPARATOR_BEGUN = re.compile(
    rf"[^\W_](?:[ ]{{1,3}}(?:(?:{_WORD_STARTS})[ ]{{0,3}})?"
    rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}(?:(?:{_WORD_STARTS}|@|\.)[ ]{{0,2}})?|[ ]{{1,3}}@[ ]{{0,3}})\Z",
    re.IGNORECASE,
)
_SEPARATOR_HINTS = (" at ", "@", "\xe4t", "arobase", "arroba", "chiocciola", " dot ", " period ",
                    "punkt", "punto")  # fmt: skip
_BRACKETED_SEPARATOR = re.compile(
    rf"{_OPEN}[ ]{{0,2}}(?:{_AT_WORDS}|{_DOT_WORDS}|point|punt|@|\.)", re.IGNORECASE
)


def _written_hold_start(
    text: str,
    floor: int,
    pattern: re.Pattern[str] = _HOLD_WRITTEN,
    before_local: re.Pattern[str] = _BEFORE_LOCAL,
) -> int:
    """Where a written-out address that ``text`` may end in starts (at ``floor`` or after), or
    ``len(text)``. ``pattern`` is tried only at the start of the local part before each "at"
    (" at ", "@", "(at)", ...) and before a separator begun at the end ("john ", "john (d"):
    tried at every position it cost every streamed piece several times what the rest did."""
    tail = text[floor:].lower()
    if len(tail) != len(text) - floor:  # a letter that lowers to two ("İ"): positions move
        tail = text[floor:]
    ends = []  # where a separator starts (a local part may end just before it)
    for hint in _SEPARATOR_HINTS:
        at = tail.find(hint)
        while at != -1:
            ends.append(floor + at)
            at = tail.find(hint, at + 1)
    if "(" in tail or "[" in tail or "{" in tail or "<" in tail:
        ends += [m.start() for m in _BRACKETED_SEPARATOR.finditer(text, floor)]
    return _written_hold_after(text, floor, ends, pattern, before_local)


def _written_hold_after(
    text: str,
    floor: int,
    ends: list[int],
    pattern: re.Pattern[str],
    before_local: re.Pattern[str],
) -> int:
    """:func:`_written_hold_start` once the separators in ``text`` are found (``ends``): with
    the one begun at its end, where the first local part before one that ``pattern`` holds
    starts."""
    begun = _SEPARATOR_BEGUN.search(text, max(floor, len(text) - 24))
    if begun:
        ends.append(begun.start() + 1)
    best = len(text)
    for end in ends:
        while end > floor and text[end - 1] in " ([{<":
            end -= 1
        window = max(floor, end - 64)
        before = before_local.match(text, window, end)
        start = before.end() if before else window
        if start < min(best, end) and pattern.match(text, start):
            best = start
    return best


# and its non-ASCII form
_HOLD_IDN_WRITTEN = re.compile(
    _written_hold(f"(?:{_IDN_LETTER}|-)", rf"(?:{_IDN_LETTER}|[_.%+\-])", r"[^\W_]") + r"\Z",
    re.IGNORECASE,
)
_HOLD_CONTEXT = 4  # characters before the held window folded too, for the look-behinds


def _hold_folded(text: str, floor: int) -> int:
    """Where :data:`_HOLD` matches the folded copy of ``text[floor:]`` (or an e-mail address
    of non-ASCII letters may be forming), as an index of ``text``; ``len(text)`` if nowhere."""
    base = max(0, floor - _HOLD_CONTEXT)
    tail = text[base:]
    if tail.isascii():
        return len(text)
    folded = _fold(tail)
    start = folded.index(floor - base)
    patterns = [_HOLD] if folded.text is not tail else []
    last = folded.text[-1:]
    # "jörg at bü", "jörg (at) "
    cut = _written_hold_start(folded.text, start, _HOLD_IDN_WRITTEN, _IDN_BEFORE_LOCAL)
    if last.isalnum() or last in ("_", ".", "%", "+", "-", "@"):  # else no address can end there
        patterns.append(_HOLD_IDN_EMAIL)
        if _NO_SPACE_LETTER.search(folded.text, start):
            # It matches at most _NO_SPACE_LOCAL characters before the last "@" (the domain has
            # none), or before the end: searched from there, not from every held position.
            at = folded.text.rfind("@", start)
            begin = (len(folded.text) if at == -1 else at) - _NO_SPACE_LOCAL
            match = _HOLD_NO_SPACE_EMAIL.search(folded.text, max(start, begin))
            cut = min(cut, match.start()) if match else cut
    for pattern in patterns:
        match = pattern.search(folded.text, start)
        if match:
            cut = min(cut, match.start())
    return base + folded.original(cut)


# Plain text: ASCII letters, spaces and punctuation no hold pattern reads (no digit, "+", "(",
# "-", ".", "@", bracket or address character); and what in such text makes a hold of its own:
# a context word (:data:`_HOLD_CUED`) or a written-out address's separator (_SEPARATOR_HINTS).
_PLAIN = re.compile(r"[A-Za-z \n\t,;!?'\"]*")
# Searched in the lowered text, case-sensitively: the same matches in ASCII text as the context
# words' IGNORECASE (their letters are lowercase), in half the time.
_CONTEXT_OR_SEPARATOR = re.compile(
    "|".join((_HOLD_CONTEXT_WORD.pattern, *(re.escape(hint) for hint in _SEPARATOR_HINTS))),
    re.ASCII | re.VERBOSE,
)
_HOLD_IBAN_SPELLED_END = _HOLD_OTHER_ENDS[0]


def _plain_hold(text: str) -> int | None:
    """:func:`hold_from` of plain text (:data:`_PLAIN`) with no span, no context word and no
    written separator (None for any other text), computed with only what can match in it:
    the e-mail, IPv6 and spelled-IBAN branches of :data:`_HOLD` (the phone's needs a digit, "+"
    or "(", the IBAN's digits) and a written-out address's separator begun at the end (no other
    separator is there); no folded copy (ASCII), no local number (digits). The common streamed
    piece of words: what every branch, hint and pattern tried on it cost was most of the
    guard's time for such a piece."""
    if (
        len(text) > MAX_HOLD
        or not _PLAIN.fullmatch(text)
        or _CONTEXT_OR_SEPARATOR.search(text.lower())
    ):
        return None
    cut = _hold_branches(text, 0, (_HOLD_IBAN_SPELLED_END,))
    if cut > 0:
        cut = min(cut, _written_hold_after(text, 0, [], _HOLD_WRITTEN, _BEFORE_LOCAL))
    return cut


def hold_from(text: str, spans: Sequence[Span] | None = None) -> int:
    """For streaming output: the smallest index i such that text[i:] might still become (part
    of) a PII span when more text is appended. Returns len(text) when nothing needs holding, and
    never holds more than MAX_HOLD characters back.

    Emitting ``mask(text[:i])`` piece by piece gives what ``mask`` of the whole text would: a
    context word a span depends on is held too, and so is a complete span that ``i`` would cut
    or part from the label after it.
    ``spans``: ``find(text)`` (all entities) when the caller has it already.
    """
    if spans is not None and not spans and (plain := _plain_hold(text)) is not None:
        return plain
    floor = max(0, len(text) - MAX_HOLD)
    cut = _hold_start(text, floor)
    if cut > floor:
        cut = min(cut, _written_hold_start(text, floor))
    if not text.isascii():
        cut = min(cut, _hold_folded(text, floor))
    if spans is None:
        base = max(0, floor - MAX_HOLD)
        spans = [Span(s.entity, s.start + base, s.end + base) for s in find(text[base:])]
    for span in spans:
        # A phone number labelled after it ("781 1704 office") is one only with its label.
        label = _PHONE_LABEL_AFTER.match(text, span.end) if span.entity == "PHONE" else None
        if span.start < cut < (label.end() if label else span.end):
            cut = span.start
            break
    # A local number is one only with no word after it: one that a word after it unmade is not
    # released without that word (alone it would be masked).
    local = _LOCAL_NUMBER_END.search(text, max(0, cut - 11), cut) if cut < len(text) else None
    if local and not any(span.start == local.start() for span in spans):
        cut = local.start()
    return max(cut, floor)

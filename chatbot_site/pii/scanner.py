"""The shared scanner: every finder run, overlaps resolved, spans masked."""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from .card import _cards
from .email_written import _any_emails, _any_idn_emails, _may_be_written
from .fold import _fold
from .iban import _ibans
from .ip import _ips
from .phone import _phones
from .spaced import _spaced_digits
from .spans import _PRIORITY, ENTITIES, Span
from .ssn import _ssns

# --- find, mask, hold_from ---------------------------------------------------------------

_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "EMAIL": _any_emails,
    "PHONE": _phones,
    "CREDIT_CARD": _cards,
    "IBAN": _ibans,
    "SSN": _ssns,
    "IP_ADDRESS": _ips,
}
# The finders for the folded copy of a text with non-ASCII characters.
_UNICODE_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    **_FINDERS,
    "EMAIL": _any_idn_emails,
}
# Every entity needs a digit, except e-mail ("@", or "at" written out: :func:`_may_be_written`):
# text with none of these is clean.
_MAYBE_PII = re.compile(r"[0-9@]")
_MAYBE_PII_UNICODE = re.compile(r"[\d@\ufe6b\uff20]")  # any decimal digit, small and wide "@"
_NO_DIGITS = str.maketrans("", "", "0123456789")
# Full stops that folding makes "." (the ideographic one, its half-width and full-width forms):
# an address in a script without spaces stops at one unless a known top-level domain follows.
_FULL_STOP = re.compile("[\u3002\uff61\uff0e]")


def _finders_for(
    text: str, finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]], digits: int
) -> list[tuple[str, Callable[[str], Iterator[tuple[int, int]]]]]:
    """The finders that could match ``text`` at all, from cheap necessary conditions: a phone
    has at least 7 digits, a card 12, an SSN 9, an IBAN its 2 check digits and more (the
    shortest, Norway's, has 13), an IPv4 address 4 digits and dots, an IPv6 address a colon;
    the e-mail finders look for their own. (A stream is scanned piece by piece: most pieces
    pass none of these.)"""
    possible = {
        "EMAIL": True,
        "PHONE": digits >= 7,
        "CREDIT_CARD": digits >= 12,
        "IBAN": digits >= 7,
        "SSN": digits >= 9,
        "IP_ADDRESS": ":" in text or (digits >= 4 and "." in text),
    }
    return [(entity, finder) for entity, finder in finders.items() if possible[entity]]


def _candidates(
    text: str, finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = _FINDERS
) -> list[Span]:
    digits = len(text) - len(text.translate(_NO_DIGITS))
    found = [
        Span(entity, start, end)
        for entity, finder in _finders_for(text, finders, digits)
        for start, end in finder(text)
    ]
    if digits >= 7:
        found += _spaced_digits(text)
    return found


def _unicode_candidates(text: str) -> list[Span]:
    """Spans in text with non-ASCII characters: those found in it as it stands (what ASCII text
    gets), then those found in its folded copy, mapped back (overlapping or the same), with
    e-mail addresses of non-ASCII letters."""
    written = _may_be_written(text)
    if not (written or _MAYBE_PII_UNICODE.search(text)):
        return []
    candidates = _candidates(text) if written or _MAYBE_PII.search(text) else []
    folded = _fold(text)
    if folded.text is not text:
        finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = _UNICODE_FINDERS
        if "@" in text and _FULL_STOP.search(text):
            stops = frozenset(folded.index(m.start()) for m in _FULL_STOP.finditer(text))
            finders = {**finders, "EMAIL": functools.partial(_any_idn_emails, stops=stops)}
        candidates += [
            Span(span.entity, *folded.span(span.start, span.end))
            for span in _candidates(folded.text, finders)
        ]
    elif written or "@" in text:
        candidates += [Span("EMAIL", start, end) for start, end in _any_idn_emails(text)]
    return candidates


def holds_no_span(text: str) -> bool:
    """Whether no span :func:`find` reports can lie within ``text``, whatever text stands before
    or after it: ASCII text without an "@" or a written-out address's separator
    (:func:`_may_be_written`, which :func:`find` itself trusts for such text) and with fewer
    digits than any entity's span holds (:func:`_finders_for`'s conditions, read on ``text``
    alone: a span within it has no more digits, colons or dots than it has): none, or fewer
    than seven with no colon, or fewer than four with no dot either (an IPv4 address has four
    numbers and dots, an IPv6 one a colon). A stream's guard reads each piece after the
    released text's last words: a piece like this starts no span there, and that scan is
    skipped ("word12 word13 " too, whose digits the scan of the lead and it looked at)."""
    if not text.isascii() or "@" in text or _may_be_written(text):
        return False
    digits = len(text) - len(text.translate(_NO_DIGITS))
    return not digits or (digits < 7 and ":" not in text and (digits < 4 or "." not in text))


def find(text: str, entities: Iterable[str] = ENTITIES) -> list[Span]:
    """Non-overlapping spans, sorted by start; a longer/validated span wins an overlap."""
    wanted = set(entities)
    if not wanted:
        return []
    if text.isascii():
        if _MAYBE_PII.search(text):
            candidates = _candidates(text)
        elif _may_be_written(text):  # no digit, no "@": only an address written out
            candidates = [Span("EMAIL", start, end) for start, end in _any_emails(text)]
        else:
            return []
    else:
        candidates = _unicode_candidates(text)
    candidates.sort(key=lambda s: (s.start - s.end, _PRIORITY[s.entity], s.start))
    starts: list[int] = []  # the chosen spans, disjoint and kept in order
    chosen: list[Span] = []
    for span in candidates:
        i = bisect.bisect(starts, span.start)
        if (i and chosen[i - 1].end > span.start) or (
            i < len(chosen) and chosen[i].start < span.end
        ):
            continue
        starts.insert(i, span.start)
        chosen.insert(i, span)
    return [s for s in chosen if s.entity in wanted]


def mask(
    text: str,
    entities: Iterable[str] = ENTITIES,
    spare: Callable[[Span, str], bool] | None = None,
) -> str:
    """text with each span replaced by its mask, e.g. "[EMAIL]"; ``spare(span, value)``: a
    span to leave as it is (the log processor's private-network addresses)."""
    maybe = _MAYBE_PII if text.isascii() else _MAYBE_PII_UNICODE
    if not (maybe.search(text) or _may_be_written(text)):
        return text
    spans = find(text, entities)
    if spare is not None:
        spans = [s for s in spans if not spare(s, text[s.start : s.end])]
    return mask_spans(text, spans, entities)


def mask_spans(text: str, spans: Sequence[Span], entities: Iterable[str] = ENTITIES) -> str:
    """``text`` with the given spans (sorted, disjoint: ``find``'s) of the wanted entities
    masked; spans reaching past the end of ``text`` are left alone."""
    wanted = set(entities)
    parts: list[str] = []
    last = 0
    for span in spans:
        if span.entity in wanted and span.end <= len(text):
            parts += (text[last : span.start], f"[{span.entity}]")
            last = span.end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)

"""Non-ASCII text: detection on a folded copy, and the way back to the original's positions."""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass

# --- non-ASCII text: detection on a folded copy -------------------------------------------

# Invisible characters, dropped: Unicode's Default_Ignorable_Code_Point set (soft hyphen,
# zero-width space and joiners, bidi marks and controls, word joiner, BOM, variation
# selectors, Hangul fillers, tags, ...), in the BMP and above it.
_INVISIBLE_BMP = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_INVISIBLE_CHAR = re.compile(
    f"[{_INVISIBLE_BMP}\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Compatibility forms folded by NFKC when that gives one ASCII character: the one dot leader,
# small forms (U+FE50-FE6B), full-width ASCII (U+FF01-FF5E), mathematical letters and digits.
_COMPAT_BMP = "\u2024\ufe50-\ufe6b\uff01-\uff5e"
_COMPAT_CHAR = re.compile(f"[{_COMPAT_BMP}\U0001d400-\U0001d7ff]")
_FULL_STOPS = "\u3002\uff61"  # the ideographic full stop, and its half-width form
_MINUS = "\u2212"
_FOLDED_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Zs", "Zl", "Zp", "Nd", "Pd"})


@functools.cache
def _foldable() -> re.Pattern[str]:
    """A character that :func:`_fold_char` may change: in the BMP those it changes (and a few
    small forms and unassigned code points it keeps), above it any (emoji, mostly; those that
    folding keeps are looked at each time, not kept in ``_FOLDED_CHARS``). Built on first use,
    so that the scan of the BMP's categories (~10 ms) is paid only by a process that sees
    non-ASCII text. One character class: the regular
    expression engine tests a BMP character against it in constant time."""
    ranges: list[list[int]] = []
    for code in range(0x80, 0x10000):
        if unicodedata.category(chr(code)) in _FOLDED_CATEGORIES:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    by_category = "".join(f"{chr(first)}-{chr(last)}" for first, last in ranges)
    others = _INVISIBLE_BMP + _COMPAT_BMP + _FULL_STOPS + _MINUS + "\x85"
    return re.compile(f"[{by_category}{others}\U00010000-\U0010ffff]")


# A cache of the characters :func:`_foldable` matches in the BMP (1,895) and of those above it
# that folding changes (marks, digits, tags, mathematical letters: 5,883), 7,778 at most. Not of
# the others above it (emoji): the expression matches every one of them, and one chat request
# (100 messages of 32,000 characters) could name all million, each kept for the process's life
# (+110 MB of RSS, seen in the soak audit). Such a character costs 0.4 µs more uncached.
_FOLDED_CHARS: dict[str, str] = {}


def _fold_char(char: str) -> str:
    folded = _FOLDED_CHARS.get(char)
    if folded is None:
        category = unicodedata.category(char)
        if category[0] == "M" or _INVISIBLE_CHAR.match(char):
            folded = ""
        elif category == "Zs":
            folded = " "
        elif char.isspace():  # line and paragraph separators, NEL
            folded = "\n"
        elif category == "Nd":
            folded = str(unicodedata.decimal(char))
        elif category == "Pd" or char == _MINUS:
            folded = "-"
        elif char in _FULL_STOPS:
            folded = "."
        elif _COMPAT_CHAR.match(char):
            nfkc = unicodedata.normalize("NFKC", char)
            folded = nfkc if len(nfkc) == 1 and nfkc.isascii() else char
        else:
            folded = char
        if folded != char or char <= "\uffff":
            _FOLDED_CHARS[char] = folded
    return folded


@dataclass(frozen=True)
class _Folded:
    """A folded copy of a text. Every character of ``text`` comes from exactly one character of
    the original (folding maps one character to one, or drops it), so positions map back."""

    text: str
    removed: list[int]  # the dropped characters' indices in the original, ascending
    gaps: list[int]  # where each of them was, as an index into ``text`` (non-decreasing)

    def original(self, index: int) -> int:
        """The original index of ``text[index]`` (of the end, for ``len(text)``)."""
        return index + bisect.bisect_right(self.gaps, index)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]``: dropped characters inside it belong to it,
        those just before or after it do not."""
        return self.original(start), self.original(end - 1) + 1

    def index(self, original: int) -> int:
        """The index in ``text`` of the original index ``original`` (or of what follows it)."""
        return original - bisect.bisect_left(self.removed, original)


def _fold(text: str) -> _Folded:
    pieces: list[str] = []
    removed: list[int] = []
    gaps: list[int] = []
    last = 0
    for match in _foldable().finditer(text):
        char = match.group()
        folded = _fold_char(char)
        if folded == char:
            continue
        at = match.start()
        pieces.append(text[last:at])
        if folded:
            pieces.append(folded)
        else:
            gaps.append(at - len(removed))
            removed.append(at)
        last = at + 1
    if not pieces:
        return _Folded(text, removed, gaps)
    pieces.append(text[last:])
    return _Folded("".join(pieces), removed, gaps)

"""Card and phone numbers typed one digit at a time or in odd groups."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from .card import luhn_ok
from .phone import _YEAR, _date_like
from .spans import Span

# --- digits typed one by one or in odd groups --------------------------------------------

# "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "0 1 7 1 2 3 4 5 6 7 8", "41 11 11 11 11 11 11 11": 7 or
# more groups of 1-4 digits sharing one separator, a space or a hyphen (not the tail of a
# longer run: a run of more than 20 groups, a table row, is no number). The card and phone
# patterns above take at most 5 and 7 groups.
# (It starts with the digit, its look-behinds after it: the search skips other characters
# fast. A "+" before it is taken in by :func:`_spaced_digits`.)
_SPACED = re.compile(
    r"[0-9](?<![\w\-.][0-9])(?<![0-9][ \-][0-9])[0-9]{0,3}([ \-])[0-9]{1,4}(?:\1[0-9]{1,4}){5,18}"
    r"(?![\w])(?![ \-.][0-9])",
    re.ASCII,
)


def _spaced_entity(plus: bool, groups: list[str]) -> str | None:
    """CREDIT_CARD (12-19 digits passing Luhn, in 8 groups or more), PHONE (7-15 digits in 8
    groups or more, or 7 or more digits one by one), or None: dates, years, counting ("1 2 3
    4 5 6 7"), bits ("1 0 1 1 0 0 1 0") and one digit repeated are none of these."""
    digits = "".join(groups)
    numbers = [int(g) for g in groups]
    steps = {b - a for a, b in itertools.pairwise(numbers)}
    if steps in ({1}, {-1}) or set(digits) <= {"0", "1"} or len(set(digits)) == 1:
        return None
    if _date_like(groups) or all(_YEAR.fullmatch(g) for g in groups):
        return None
    many = len(groups) >= 8
    if many and not plus and 12 <= len(digits) <= 19 and digits[0] != "0" and luhn_ok(digits):
        return "CREDIT_CARD"
    if 7 <= len(digits) <= 15 and (many or all(len(g) == 1 for g in groups)):
        return "PHONE"
    return None


def _spaced_digits(text: str) -> Iterator[Span]:
    """Card and phone numbers typed one digit at a time or in odd groups (one scan for both,
    run by :func:`_candidates` when the text has 7 digits or more)."""
    for m in _SPACED.finditer(text):
        start = m.start()
        plus = start > 0 and text[start - 1] == "+"
        if plus and start > 1 and (text[start - 2].isalnum() or text[start - 2] in "_+-."):
            continue
        entity = _spaced_entity(plus, m.group().split(m.group(1)))
        if entity is not None:
            yield Span(entity, start - plus, m.end())

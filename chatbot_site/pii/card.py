"""Credit card numbers: grouped or unbroken, Luhn-checked."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .spans import _cue_before

# --- CREDIT_CARD -------------------------------------------------------------------------

# Unbroken digits (so a list of cards separated by spaces is masked card by card), or groups
# sharing one separator, a space, a hyphen or a dot (then the number must not go on with more
# groups).
_CARD = re.compile(
    r"(?<![\w\-.])(?:[0-9]{12,19}(?![\w])(?![.\-][0-9])"
    r"|(?<![0-9] )[0-9]{4}([ \-.])[0-9]{1,6}(?:\1[0-9]{1,6}){1,3}(?![\w])(?![ .\-][0-9]))",
    re.ASCII,
)
# No issuer's number starts with 0, so such a number is a card only after a word for one
# ("credit card 0604 2607 0011"), the way bare SSNs need theirs.
_CARD_CUE = re.compile(
    r"\b(?:cards?|kreditkarte\w{0,2}|karte|carte|tarjeta|carta|cart\xe3o)\b",
    re.ASCII | re.IGNORECASE,
)
_CARD_GROUPS = ((4, 6, 5), (4, 6, 4))  # Amex, Diners; otherwise groups of 4, the last 1-4


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        groups = tuple(len(g) for g in m.group().split(m.group(1))) if m.group(1) else ()
        digits = m.group().replace(m.group(1), "") if m.group(1) else m.group()
        fours = all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4 if groups else True
        if not (fours or groups in _CARD_GROUPS) or not 12 <= len(digits) <= 19:
            continue
        if luhn_ok(digits) and (digits[0] != "0" or _cue_before(_CARD_CUE, text, m.start())):
            yield m.start(), m.end()

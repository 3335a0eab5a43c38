"""What every part of the detector shares: the entities, a found span, the hold's bound and
the context-word rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

ENTITIES: tuple[str, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS")
# Tie-break when two spans of the same length overlap: the more specific check wins.
_PRIORITY = {"CREDIT_CARD": 0, "IBAN": 1, "SSN": 2, "IP_ADDRESS": 3, "EMAIL": 4, "PHONE": 5}
# The longest thing the stream holds whole: an IBAN typed one character at a time, Russia's 33
# characters and their 32 separators (64 released its start), then a space and a word of up to
# 16 letters that may still label the digits at its end as a phone (_HOLD's phone branch).
MAX_HOLD = 82


@dataclass(frozen=True)
class Span:
    entity: str
    start: int
    end: int


CUE_WINDOW = 32  # a context word counts if it starts at most this many characters before


def _cue_before(cue: re.Pattern[str], text: str, start: int) -> bool:
    """A context word shortly before ``start``, with no digit between it and ``start``. Only
    text *before* a span decides, so masking a stream piecewise (see :func:`hold_from`) gives
    the same result as masking it whole."""
    found = list(cue.finditer(text, max(0, start - CUE_WINDOW), start))
    return bool(found) and not any(c.isdigit() for c in text[found[-1].end() : start])

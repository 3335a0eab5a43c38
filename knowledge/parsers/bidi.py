"""Right-to-left text that a PDF gives in visual order, back in logical order.

A PDF places glyphs, it does not store text: pdfminer reads a line's characters left to right
as they stand on the page, so an Arabic or Hebrew line came out with its characters reversed
("ةغلب ةجمربلا" for "البرمجة بلغة") and its words in the wrong order, while numbers and Latin
words inside it read left to right as printed. :func:`logical` undoes the Unicode
bidirectional algorithm's reordering (UAX #9) for one line: it resolves each character's
embedding level from its bidirectional class the way the algorithm does for text without
explicit embeddings (strong letters, numbers and the separators inside them, neutrals taking
the direction of the strong text around them), then reverses the runs from the lowest odd
level up, which is the inverse of the algorithm's rule L2 (highest level down). Brackets at an
odd level get their mirror image (L4), and a combining mark stays after the letter it follows.

A line without a right-to-left letter (Hebrew, Arabic, Syriac, Thaana, N'Ko ...) is returned
unchanged, so left-to-right documents read exactly as before."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Bracket pairs that an odd level draws mirrored: ( ) [ ] { } < > and the guillemets.
_MIRROR = str.maketrans("()[]{}<>\u00ab\u00bb\u2039\u203a", ")(][}{><\u00bb\u00ab\u203a\u2039")
# Hebrew and Arabic presentation forms: the shapes a letter takes at a word's start, middle
# or end and ligatures, which some fonts map their glyphs to. As letters (NFKC: "ﻟﻌ" is
# "لع", "ﷲ" "الله"), so that full text search finds the word; a renderer shapes them the same.
_PRESENTATION = re.compile("[\ufb1d-\ufb4f\ufb50-\ufdff\ufe70-\ufefe]+")
_NEUTRAL_IN_NUMBER = frozenset({"ES", "CS"})  # "2.5", "1,000", "10-12"


def _letters(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match.group(0))


def _direction(ch: str) -> str:
    """L, R (R and AL), N (a number: EN, AN), M (a combining mark) or the neutral class."""
    kind = unicodedata.bidirectional(ch)
    if kind in ("R", "AL"):
        return "R"
    if kind in ("EN", "AN"):
        return "N"
    if kind == "NSM":
        return "M"
    return kind or "ON"


def has_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def rtl_share(text: str) -> tuple[int, int]:
    """How many right-to-left and left-to-right letters ``text`` has."""
    rtl = ltr = 0
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            rtl += 1
        elif kind == "L":
            ltr += 1
    return rtl, ltr


def _nearest(kinds: list[str], base: str, strong: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """For each position, the nearest ``strong`` kind before it and after it (the line's ends
    count as the base direction)."""
    n = len(kinds)
    left, right = [base] * n, [base] * n
    seen = base
    for i in range(n):
        left[i] = seen
        if kinds[i] in strong:
            seen = kinds[i]
    seen = base
    for i in range(n - 1, -1, -1):
        right[i] = seen
        if kinds[i] in strong:
            seen = kinds[i]
    return left, right


def _glyph_direction(glyph: str) -> str:
    """A glyph's (one or more characters': a ligature) direction: its first letter's, else
    its first character's. A glyph that stands for more than a ligature's two letters (a
    producer's replacement text for a word, in logical order already) is kept as it is, a
    neutral."""
    if sum(1 for ch in glyph if _direction(ch) != "M") > 2:
        return "ON"
    kinds = [_direction(ch) for ch in glyph]
    return next((kind for kind in kinds if kind in ("L", "R")), kinds[0] if kinds else "ON")


def logical(visual: str | Sequence[str]) -> str:
    """One line's characters in the order they were typed, from the order they stand in.
    ``visual`` is the line's text, or its glyphs' texts left to right (a ligature's letters,
    "لا", are in logical order within their glyph and stay so)."""
    if not has_rtl("".join(visual)):
        return "".join(visual)
    # Clusters: a glyph and the combining marks after it, never split by a reversal.
    clusters: list[str] = []
    kinds: list[str] = []
    for glyph in visual:
        kind = _glyph_direction(glyph)
        if kind == "M" and clusters:
            clusters[-1] += glyph
            continue
        clusters.append(glyph)
        kinds.append("ON" if kind == "M" else kind)
    n = len(clusters)
    base = "R" if kinds.count("R") >= kinds.count("L") else "L"
    # W4/W5: a separator between two digits and currency or percent signs next to digits are
    # part of the number.
    for i in range(1, n - 1):
        if kinds[i] in _NEUTRAL_IN_NUMBER and kinds[i - 1] == "N" and kinds[i + 1] == "N":
            kinds[i] = "N"
    for walk in (range(n), range(n - 1, -1, -1)):
        previous = ""
        for i in walk:
            if kinds[i] == "ET" and previous == "N":
                kinds[i] = "N"
            previous = kinds[i]

    # Numbers: left to right at the level above their surroundings (I1/I2), except in
    # left-to-right text between left-to-right letters (W7), where they are that text.
    left, right = _nearest(kinds, base, ("L", "R"))
    directions = [
        ("L" if left[i] == right[i] == "L" else "R") if kind == "N" else kind
        for i, kind in enumerate(kinds)
    ]
    # N1/N2: a neutral between text of one direction (numbers count as right-to-left) takes
    # that direction, else the base's.
    left, right = _nearest(directions, base, ("L", "R"))
    levels: list[int] = []
    for i, kind in enumerate(kinds):
        if kind == "N":
            levels.append(0 if base == "L" and directions[i] == "L" else 2)
            continue
        direction = kind if kind in ("L", "R") else left[i] if left[i] == right[i] else base
        levels.append(1 if direction == "R" else 0 if base == "L" else 2)
    order = list(range(n))
    for level in range(1, max(levels) + 1):
        i = 0
        while i < n:
            if levels[order[i]] < level:
                i += 1
                continue
            j = i
            while j < n and levels[order[j]] >= level:
                j += 1
            order[i:j] = order[i:j][::-1]
            i = j
    # A right-to-left letter touching a left-to-right one: the space between them was drawn
    # elsewhere (a producer draws a run's space at its end, at the far side of the other
    # run), and "Pythonمن" is one word to full text search.
    text: list[str] = []
    previous = ""
    for i in order:
        if {previous, kinds[i]} == {"L", "R"}:
            text.append(" ")
        cluster = _PRESENTATION.sub(_letters, clusters[i])
        text.append(cluster.translate(_MIRROR) if levels[i] % 2 else cluster)
        previous = kinds[i]
    return "".join(text)

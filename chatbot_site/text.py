"""Text as its readers see it, in any script: where it may be cut without splitting what shows
as one character (a grapheme cluster), what a word is and where a sentence ends.

The cut is a simple approximation of Unicode's extended grapheme clusters (UAX #29), not the
full algorithm: a position is *not* a boundary

- before a combining mark (``unicodedata`` categories Mn, Mc, Me: accents, Thai and Devanagari
  vowel signs, Arabic vowel marks, variation selectors U+FE00-FE0F, keycap U+20E3) or before
  Thai/Lao SARA AM (U+0E33, U+0EB3: spacing vowels Unicode files as letters);
- before or after ZERO WIDTH JOINER (U+200D, emoji ZWJ sequences such as families);
- before an emoji skin-tone modifier (U+1F3FB-1F3FF) or a tag character (U+E0020-E007F,
  subdivision flags);
- inside a regional-indicator pair (flags): between two indicators after an odd number of them;
- between CR and LF.

Not modelled: Hangul jamo sequences, prepended concatenation marks, Indic conjuncts across a
virama (a cut there leaves a half form, which still reads). A cut never walks back more than
:data:`MAX_WALK` code points: past that (a base letter with 40 marks on it) the text is cut where
it was asked to be.
"""

from __future__ import annotations

import re
import unicodedata

MAX_WALK = 32
ZWJ = "\u200d"
MARK_CATEGORIES = frozenset({"Mn", "Mc", "Me"})
_SPACING_VOWELS = frozenset("\u0e33\u0eb3")


def is_mark(ch: str) -> bool:
    """A combining mark: it belongs to the character before it."""
    return unicodedata.category(ch) in MARK_CATEGORIES


def _extends(ch: str) -> bool:
    """``ch`` joins the cluster before it."""
    return (
        ch == ZWJ
        or ch in _SPACING_VOWELS
        or "\U0001f3fb" <= ch <= "\U0001f3ff"
        or "\U000e0020" <= ch <= "\U000e007f"
        or is_mark(ch)
    )


def _regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _boundary(text: str, i: int) -> bool:
    """Whether ``text`` may be cut before ``text[i]`` (0 < i < len(text))."""
    before, after = text[i - 1], text[i]
    if before == ZWJ or _extends(after):
        return False
    if before == "\r":
        return after != "\n"
    if _regional(before) and _regional(after):
        start = i - 1
        while start > 0 and _regional(text[start - 1]):
            start -= 1
        return (i - start) % 2 == 0  # an even number of indicators before: between two flags
    return True


def mostly_latin(text: str) -> bool:
    """At least half of ``text``'s letters are Latin (any text without letters too): what an
    English model such as the local embedder reads as words."""
    if text.isascii():
        return True
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() or unicodedata.name(c, "").startswith("LATIN") for c in letters)
    return 2 * latin >= len(letters)


def grapheme_cut(text: str, n: int) -> int:
    """The largest position ``<= n`` at which ``text`` can be cut without splitting a grapheme
    cluster (by the approximation above). Never 0 for ``n > 0``: when the walk back would reach
    the start of ``text`` or pass :data:`MAX_WALK` code points, ``n`` itself."""
    if n >= len(text):
        return len(text)
    if n <= 0:
        return 0
    cut = n
    while cut > 0 and n - cut <= MAX_WALK:
        if _boundary(text, cut):
            return cut
        cut -= 1
    return n


def clip(text: str, n: int) -> str:
    """At most ``n`` code points of the start of ``text``, cut at a grapheme boundary."""
    return text[: grapheme_cut(text, n)]


def _mark_class() -> str:
    """The combining marks of planes 0 and 1 as the body of a regex character class (read from
    ``unicodedata`` once, at import: under 20 ms)."""
    ranges: list[list[int]] = []
    categories = map(unicodedata.category, map(chr, range(0x20000)))
    for code, category in enumerate(categories):
        if category in MARK_CATEGORIES:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


# A word: letters, digits and underscore (``\w``) with the combining marks written on them and the
# joiners inside Persian and Indic words (ZWNJ, ZWJ). ``\w`` alone is no word pattern for most of
# the world's scripts: Python's ``re`` reads no mark as a word character, so it cut "राजनीति"
# into र, जन, त and the Arabic "كَتَبَ" into its three letters.
WORD = re.compile(f"[\\w{_mark_class()}\u200c\u200d]+")

# A full stop that ends an abbreviation, not a sentence: an initial (one capital letter, a word
# of its own: "Thomas J. Watson", "J. R. R. Tolkien", "U.S. Army"), "e.g." and "i.e.", and a
# few titles ("Dr. Smith"). Each a fixed-width look-behind, as Python's ``re`` requires. The
# price: a sentence that ends in an initial ("... Plan B. Then") runs on into the next.
_CAPITAL = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0391-\u03a9\u0410-\u042f\u0401"
_NOT_ABBREVIATION = (
    f"(?<!\\b[{_CAPITAL}]\\.)(?<!\\b[a-z]\\.[a-z]\\.)"
    "(?<!\\b(?:Mr|Ms|Dr|Jr|Sr|St|vs|cf)\\.)(?<!\\bMrs\\.)(?<!\\bProf\\.)"
)

# A list item's number at the start of a line ("1. **PII masking**: ...", "12. Done"): its full
# stop ends no sentence (a chunk ended with a bare "1.", its item in the next). One or two digits
# at the very start or after a newline; each a fixed-width look-behind.
_NOT_LIST_NUMBER = "(?<!\\A\\d\\.)(?<!\\n\\d\\.)(?<!\\A\\d\\d\\.)(?<!\\n\\d\\d\\.)"

# Where a sentence ends: Latin ``.!?`` (not a full stop that ends an abbreviation or a list
# item's number), the Devanagari danda and double danda (``।॥``), the Arabic question mark
# (``؟``) and the Urdu full stop (U+06D4) where whitespace follows; the CJK full stop, fullwidth
# exclamation and question marks (``。``, U+FF01, U+FF1F) wherever they stand, since those
# scripts put no space after them. A pattern to split at (an alternation: wrap it in a group to
# add to it), with :func:`split_sentences`. Chunking and the offline answerer both split with it.
SENTENCE_END = (
    f"(?<=[.!?\u0964\u0965\u061f\u06d4]){_NOT_ABBREVIATION}{_NOT_LIST_NUMBER}\\s+"
    "|(?<=[\u3002\uff01\uff1f])\\s*"
)

# An inline code span (`` `print("你好。世界")` ``, `` `echo done. ok` ``) on one line.
INLINE_CODE = re.compile(r"`[^`\n]+`")
_CJK_END = "\u3002\uff01\uff1f"
# Where no sentence ends: inline code, and a URL (after anything but an ASCII letter or digit, so
# also one glued to Chinese text). A URL runs to whitespace; a CJK full stop, exclamation or
# question mark is part of it where a URL character follows (".../モーニング娘。/history"), and
# ends it where text goes on ("https://example.com。然后": the sentence ends there). Not
# modelled: a host name written with U+3002 for its dots ("例子。测试"), which splits there.
_NO_END_INSIDE = re.compile(
    f"{INLINE_CODE.pattern}|(?i:(?<![a-z0-9_])(?:(?:https?|ftp)://|www\\.)"
    f"(?:[^\\s<>\"'`{_CJK_END}]|[{_CJK_END}](?=[a-z0-9/?#%&=+_.~:@-]))+)"
)


def split_sentences(text: str, ends: re.Pattern[str]) -> list[str]:
    """``ends.split(text)`` (``ends``: :data:`SENTENCE_END`, or an alternation with it, without
    groups), except where the match is inside inline code or a URL: a `。` or ". " there ends no
    sentence. Text without a backtick or a URL is split by ``ends`` alone."""
    if "`" not in text and "://" not in text and "www." not in text and "WWW." not in text:
        return ends.split(text)
    inside = [m.span() for m in _NO_END_INSIDE.finditer(text)]
    if not inside:
        return ends.split(text)
    out, start, k = [], 0, 0
    for end in ends.finditer(text):
        position = end.start()
        while k < len(inside) and inside[k][1] <= position:
            k += 1
        if k < len(inside) and inside[k][0] < position:  # within a span (not at its edges)
            continue
        out.append(text[start:position])
        start = end.end()
    out.append(text[start:])
    return out

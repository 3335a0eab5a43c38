"""Phone numbers."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from .spans import _cue_before

# --- PHONE -------------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?<![\w+])
    (?:\+[0-9]{1,3}[ .\-]?                       # a country code, even right after a number;
      |(?=\([0-9]{1,5}\))                           # an area code in brackets, also after one
      |(?<![0-9][ .\-/])(?:00[0-9]{1,3}[ .\-]?)?)  # else not the tail of a longer number
    (?:\(0\)[ .\-]?)?                     # trunk prefix, as in +44 (0)20
    (?:\([0-9]{1,5}\)[ .\-]?)?            # area code in brackets
    [0-9]{1,12}(?:(?:[ .\-/]|\ /\ )[0-9]{1,12}){0,6}  # " / " after an area code (089 / 1234)
    (?:\ ?(?:x|ext\.?)\ ?[0-9]{1,6})?     # extension
    (?![\w])(?![ .\-/][0-9])(?!\ /\ [0-9])
    """,
    re.ASCII | re.VERBOSE | re.IGNORECASE,
)
_PHONE_EXT = re.compile(r" ?(?:x|ext\.?) ?[0-9]{1,6}\Z", re.ASCII | re.IGNORECASE)
_PHONE_SEP = re.compile(r"[ .\-/()]{1,4}")
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
_SSN_SHAPE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")  # an SSN or nothing, even out of range
# A clinical trial's number in the EU registers: EudraCT "2004-002245-12" (year, six digits,
# check digits) and EU CT "2022-500123-45-00": a register number, never a phone (no plain
# phone number starts with a year and a hyphen in this shape). SciFact's abstracts cite them.
_TRIAL_REGISTER = re.compile(r"(?:19|20)[0-9]{2}-[0-9]{6}-[0-9]{2}(?:-[0-9]{2})?")
# An Indian mobile number as it is written at home, five and five digits ("98765 43210"):
# the first digit 6-9 (the mobile ranges), one space (with a dash, "26821559 - 92499-26033 -
# 19216", it was arithmetic in the HTML corpus: that form needs a phone word as before). A
# phone without a phone word, as
# national numbers with a trunk prefix are; two round groups ("90000 95000", both multiples of
# 100) are no number.
_INDIAN_MOBILE = re.compile(r"[6-9][0-9]{4} [0-9]{5}")
# Two plain groups ("555 1234", "3610-114") are as often a street number or a postcode: they
# count only right after one of these words, with no other number in between.
_PHONE_CUE = re.compile(
    r"\b(?:phones?|tel|telephone|call(?:ed|ing)?|mobile|cell|fax|desk|office|contact|reach"
    r"|dial|sms|text|whatsapp|answering"
    # Danish, Norwegian, Swedish: ring (call), tlf (tel.), kontakt (contact), mobil (above)
    r"|ring(?:e|er)?|tlf|kontakt"
    # German, French, Spanish, Italian, Dutch: phone, mobile, call, number
    r"|telefon\w{0,8}|handy\w{0,6}|mobil\w{0,8}|ruf\w{0,6}|anruf\w{0,4}|nummer|erreichbar"
    r"|t\xe9l(?:\xe9phone)?|portable|appel\w{0,4}|num\xe9ro|t\xe9l\xe9fono|telefono|m\xf3vil"
    r"|celular|llam\w{0,4}|n\xfamero|numero|chiama\w{0,4}|cellulare|bellen|bel(?=\s{1,3}(?:me|ons)\b))\b",
    re.ASCII | re.IGNORECASE,
)


# A phone word written right after the number labels it, as contact blocks do ("781 1704
# office", "3660170548-Fax", "555 0199 (mobile)"): nouns only, not the verbs that announce a
# number ("555 0199 is my phone" is no label). Held by _HOLD while it forms.
_PHONE_LABEL_AFTER = re.compile(
    r"[ \-/(]{1,3}(?:phones?|tel|telephone|mobile|cell|fax|office|desk|telefon\w{0,8}|handy"
    r"|mobil\w{0,8}|t\xe9l(?:\xe9phone)?|portable|celular|cellulare|m\xf3vil|telefono"
    r"|t\xe9l\xe9fono)\b",
    re.ASCII | re.IGNORECASE,
)


# A local number written alone, with no phone word near it ("my registered 668 5702."): three
# digits that may start an exchange (2-9), one space, four digits that are no year, and no word
# after it: "370 3911 Fourth Avenue", "Suite 541 6343 Skogstien" are street addresses (eight
# of Presidio's dev rows). The benign corpora (29 M characters) hold this shape nowhere else.
# The stream holds the number and the word after it (_HOLD's phone branch) until it is decided.
_LOCAL_NUMBER = re.compile(r"[2-9][0-9]{2} (?!(?:19|20)[0-9]{2})[0-9]{4}", re.ASCII)
# A URL after it is no word (2026-12-07, late night): the output guard makes one to another
# host "[link removed]" before masking, and "555 0199 https://evil.test/y" was masked in the JSON
# answer ("555 0199 [link removed]") and shown in the stream, which had released the number with
# the raw "https" after it. (The stream holds "https" as a label being typed, until its ":".)
_WORD_AFTER = re.compile(
    r"[ ]{1,3}(?!(?i:https?|ftp|wss?|data|javascript|vbscript|file):|(?i:www)\.)[^\W\d_]"
)
# The same at the end of released text (hold_from): not parted from the word that may follow.
_LOCAL_NUMBER_END = re.compile(r"(?<![0-9])[2-9][0-9]{2} [0-9]{4}[ ]{0,3}\Z", re.ASCII)


# Small numbers in a row ("batch 32 64 128", "viewBox 0 0 512 512", "2 901 019 adults"): plain
# groups of at most three digits, one space between them, at most eight digits in all, are a
# phone only after a phone word or with a label after them (the Presidio dev rows of this shape,
# "Phone: 72 128 827", "answering at 78 651 450", "416 60 039 office", all have one). So are
# powers of two doubling along the row ("batch 32 64 128 256 512"), however many digits.
_SMALL_GROUPS = re.compile(r"[0-9]{1,3}(?: [0-9]{1,3})+", re.ASCII)
_SMALL_DIGITS = 8


# Four pairs ("12 34 56 78", "48 12 39 07") are how Denmark and Norway write their eight-digit
# numbers: a phone without a phone word, unless the row is one of those below.
_PAIRS = re.compile(r"[1-9][0-9](?: [0-9]{2}){3}", re.ASCII)
# ... but four pairs that all lie within ten of each other ("scores 61 62 60 59", "grades 88 85
# 87 90", "pulse 72 74 71 73") are readings in a row: four random pairs of a phone number are
# that close about once in 250.
_CLOSE_PAIRS = 9


def _small_numbers(raw: str) -> bool:
    """Whether ``raw`` is such a row: then it is weak, as two plain groups are."""
    if _SMALL_GROUPS.fullmatch(raw) and len(raw) - raw.count(" ") <= _SMALL_DIGITS:
        if not _PAIRS.fullmatch(raw):
            return True
        values = [int(g) for g in raw.split(" ")]
        if max(values) - min(values) <= _CLOSE_PAIRS:
            return True
    return _row_of_numbers(raw)


# Rows of numbers that no national format writes, whatever their length (2026-12-07, night:
# conversations/evaldata/pii_numbers.jsonl's tune rows): plain groups one space apart, none
# but "0", "00", ... with a leading zero (a trunk prefix, "06 12 34 56 78", is a phone's), and
# - a progression: a constant step ("sizes 100 200 300 400", "10001 10002 10003"), or doubling
#   or halving ("batch 32 64 128 256 512"); but pairs stepping by a multiple of 11 ("12 34 56
#   78", "22 33 44 55", "12 34 56 78 90": how a phone number in pairs is written as an
#   example) are no row at all, whatever follows;
# - round: every group a multiple of 5 ("timings 10 30 45 60 90 120", "1 000 000 000");
# - an amount in thousands ending in 000 ("12 500 000 euros");
# - a table row: five groups or more of at most three digits ("scores 88 92 75 64 81"), or four
#   or more of three ("prices 199 249 299 349": no country writes a number so).
_ROW = re.compile(r"[0-9]{1,5}(?: [0-9]{1,5}){2,6}", re.ASCII)
_THOUSANDS = re.compile(r"[1-9][0-9]{0,2}(?: [0-9]{3})+", re.ASCII)


def _row_of_numbers(raw: str) -> bool:
    if not _ROW.fullmatch(raw):
        return False
    groups = raw.split(" ")
    if any(g[0] == "0" and g.strip("0") for g in groups):
        return False
    # A group "0" after the first: a phone number writes no lone zero inside it (a French
    # "0 800 ..." has it first); an SVG viewBox or a crop box does ("viewBox 0 0 2048 1536").
    if "0" in groups[1:]:
        return True
    values = [int(g) for g in groups]
    steps = {b - a for a, b in itertools.pairwise(values)}
    if len(steps) == 1 and 0 not in steps:
        return not (all(len(g) == 2 for g in groups) and steps.pop() % 11 == 0)
    if all(b == 2 * a for a, b in itertools.pairwise(values)) or all(
        a == 2 * b for a, b in itertools.pairwise(values)
    ):
        return True
    if all(v % 5 == 0 for v in values):
        return True
    if _THOUSANDS.fullmatch(raw) and groups[-1] == "000":
        return True
    longest = max(len(g) for g in groups)
    return (len(groups) >= 5 and longest <= 3) or (
        len(groups) >= 4 and all(len(g) == 3 for g in groups)
    )


# A range or a ratio of two numbers, each a plain number or one in thousands ("330 000-701
# 200", "5353-10 649", "11 256/20 849", "378/100 000", "GSM 850 / 1900"), the first smaller and
# a space somewhere (not after a trunk prefix: "089 / 1234567" is a phone), or of two decimals
# ("1457.60-2761.80", "35.35-41.23"): statistics, not phones (SciFact's abstracts hold dozens).
_NUMBER = r"(?:[1-9][0-9]{0,2}(?:\ [0-9]{3}){1,4}|[1-9][0-9]{0,11})"
_RANGE = re.compile(rf"({_NUMBER})\ ?[\-/]\ ?({_NUMBER})", re.ASCII | re.VERBOSE)
_DECIMAL_RANGE = re.compile(r"[0-9]{1,6}\.[0-9]{1,4} ?[\-/] ?[0-9]{1,6}\.[0-9]{1,4}", re.ASCII)


def _range_of_numbers(main: str) -> bool:
    if _DECIMAL_RANGE.fullmatch(main):
        return True
    m = _RANGE.fullmatch(main)
    if m is None or " " not in main:  # "555-1234" stays two plain groups (weak)
        return False
    low, high = (int(g.replace(" ", "")) for g in m.groups())
    return low < high


def _local_number(text: str, start: int, end: int) -> bool:
    return bool(_LOCAL_NUMBER.fullmatch(text, start, end)) and not _WORD_AFTER.match(text, end)


def _date_like(groups: list[str]) -> bool:
    for a, b, c in zip(groups, groups[1:], groups[2:], strict=False):
        if _YEAR.fullmatch(a) and len(b) <= 2 and len(c) <= 2:  # 2024-01-15
            if 1 <= int(b) <= 12 and 1 <= int(c) <= 31:
                return True
        elif _YEAR.fullmatch(c) and len(a) <= 2 and len(b) <= 2:  # 15.01.2024, 01/15/2024
            x, y = sorted((int(a), int(b)))
            if 1 <= x <= 12 and 1 <= y <= 31:
                return True
    return False


def phone_ok(raw: str, labelled: bool = False) -> bool:
    """Whether ``raw`` has a phone number's shape; ``labelled``: a phone word labels it right
    after it (then a bare run of 10-15 digits is one, NANP or not: "3660170548-Fax"; a word
    before it does not do that, "desk%40568721512" in a URL)."""
    main = _PHONE_EXT.sub("", raw)
    groups = [g for g in _PHONE_SEP.split(main.lstrip("+")) if g]
    digits = "".join(groups)
    if not 7 <= len(digits) <= 15:
        return False
    if len(groups) == 1 and main == digits:  # a bare run of digits: a NANP number, or labelled
        nanp = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
        if labelled and len(digits) >= 10:
            return True
        return len(nanp) == 10 and nanp[0] in "23456789" and nanp[3] in "23456789"
    if "." in main and (len(groups) < 3 or any(not 2 <= len(g) <= 4 for g in groups)):
        return False  # decimals, versions, IP-shaped quads
    if _range_of_numbers(main):
        return False
    if len(groups[-1]) < 2 or _date_like(groups) or _SSN_SHAPE.fullmatch(raw):
        return False
    if _TRIAL_REGISTER.fullmatch(raw):
        return False
    return not all(len(g) == 4 and _YEAR.fullmatch(g) for g in groups)


def _phone_at(text: str, start: int, end: int) -> bool:
    raw = text[start:end]
    plain = raw[0] not in "+(" and not raw.startswith("00")
    groups = _PHONE_SEP.split(_PHONE_EXT.sub("", raw))
    # Two plain groups after a trunk prefix ("030 12345678", "07700 900123", "06 12345678")
    # are a national number: an area code of 2-5 digits starting with one 0, 10-12 digits
    # in all (a ZIP+4 such as 02139-1234 has 9; "0 1234567890" is a zero and a number).
    area = groups[0]
    national = 2 <= len(area) <= 5 and area[0] == "0" and area[1:2] != "0"
    national = national and 10 <= len("".join(groups)) <= 12
    mobile = _INDIAN_MOBILE.fullmatch(raw) is not None and not all(
        int(g) % 100 == 0 for g in groups
    )
    weak = plain and ((len(groups) == 2 and not national and not mobile) or _small_numbers(raw))
    labelled = _PHONE_LABEL_AFTER.match(text, end) is not None
    return phone_ok(raw, labelled) and (
        not weak
        or labelled
        or _cue_before(_PHONE_CUE, text, start)
        or _local_number(text, start, end)
    )


# Two numbers each written with its own hyphens, dots or brackets, one space between them
# ("Tel 03-1234-5678 03-8765-4321", 2026-12-07, late night): the candidate pattern takes them as
# one run of 20 digits, no phone, and both were shown. Each is judged on its own.
_WRITTEN_APART = re.compile(r"[0-9()+]+[.\-][0-9().\-]+", re.ASCII)


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        start, end = m.span()
        if _phone_at(text, start, end):
            yield start, end
            continue
        raw = m.group()
        if " " not in raw or sum(c.isdigit() for c in raw) <= 15:
            continue
        at = raw.find(" ")
        while at != -1:
            left, right = raw[:at], raw[at + 1 :]
            if (
                _WRITTEN_APART.fullmatch(left)
                and _WRITTEN_APART.fullmatch(right)
                and _phone_at(text, start, start + at)
                and _phone_at(text, start + at + 1, end)
            ):
                yield start, start + at
                yield start + at + 1, end
                break
            at = raw.find(" ", at + 1)

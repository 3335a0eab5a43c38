"""IBANs: ISO 13616 length and mod-97, grouped or typed one character at a time."""

from __future__ import annotations

import re
from collections.abc import Iterator

# --- IBAN --------------------------------------------------------------------------------

# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![\w])[A-Za-z]{2}[0-9]{2}", re.ASCII)
_IBAN_BODY = re.compile(r"(?: ?[A-Za-z0-9]){11,30}", re.ASCII)
# From its second check digit (the search skips other characters fast), the four characters
# before it looked behind at; that they share its separator is checked by :func:`_ibans`.
_IBAN_SPACED = re.compile(
    r"[0-9](?<=[A-Za-z][ \-][A-Za-z][ \-][0-9])(?<![\w][A-Za-z][ \-][A-Za-z][ \-][0-9])"
    r"([ \-])[0-9](?:\1[A-Za-z0-9]){11,30}(?![\w])",
    re.ASCII,
)


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    # Start by start: a failed candidate must not swallow a real IBAN that follows it.
    for s in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(s.group()[:2].upper())
        body = _IBAN_BODY.match(text, s.end())
        if length is None or body is None:
            continue
        end, seen = s.end(), 4
        while seen < length and end < body.end():  # walk `length` alphanumerics
            seen += text[end] != " "
            end += 1
        if seen < length or (end < len(text) and (text[end].isalnum() or text[end] == "_")):
            continue
        candidate = text[s.start() : end]
        spaced = " " in candidate
        if spaced and any(c != " " for c in candidate[4::5]):
            continue  # spaces only as the usual groups of four
        if iban_ok(candidate):
            yield s.start(), end
    # Typed one character at a time, "D E 8 9 3 7 0 4 ...": the first `length` of them.
    for m in _IBAN_SPACED.finditer(text):
        start, separator = m.start() - 4, m.group(1)
        run = text[start : m.end()]
        length = IBAN_LENGTHS.get((run[0] + run[2]).upper())
        if length is None or run[1] != separator or run[3] != separator:
            continue
        if length * 2 - 1 <= len(run) and iban_ok(run[: length * 2 - 1].replace(separator, "")):
            yield start, start + length * 2 - 1

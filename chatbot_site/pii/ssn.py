"""US social security numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .spans import _cue_before

# --- SSN ---------------------------------------------------------------------------------

_SSN = re.compile(  # AAA-GG-SSSS, even right after another number; AAA GG SSSS on its own
    r"(?<![\w\-.])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![\w])(?![\-.][0-9])"
    r"|(?<![\w\-.])(?<![0-9] )([0-9]{3})( ?)([0-9]{2})\5([0-9]{4})(?![\w])(?![ \-.][0-9])",
    re.ASCII,
)
_SSN_CUE = re.compile(r"\b(?:ssns?|social\s{1,3}security)\b", re.ASCII | re.IGNORECASE)


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        parts = m.group(1, 2, 3) if m.group(1) else m.group(4, 6, 7)
        bare = m.group(5) == ""
        if ssn_ok(*parts) and (not bare or _cue_before(_SSN_CUE, text, m.start())):
            yield m.start(), m.end()

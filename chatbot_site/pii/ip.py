"""IPv4 and IPv6 addresses."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

# --- IP_ADDRESS --------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w])(?<![\w]\.)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![\w])(?!\.[\w])", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\.[0-9]{1,3}){0,3}(?![\w:])",
    re.ASCII,
)


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        try:
            ip = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified):  # this machine's: nobody's address
            yield m.start(), m.end()
    for m in _IPV6.finditer(text):
        raw = m.group()
        hex_digits = sum(c != ":" and c != "." for c in raw)
        if hex_digits < 3 or not any(c.isdigit() for c in raw):
            continue
        try:
            ip6 = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if not (ip6.is_loopback or ip6.is_unspecified):
            yield m.start(), m.end()

"""Plain text: encoding detected (UTF-8, UTF-16 with BOM, else charset-normalizer's guess),
NUL bytes dropped, invalid sequences replaced — never a crash at insert. Paragraphs split on
blank lines."""

from __future__ import annotations

import codecs
import re

from knowledge.parsers import Block, Limits, ParseError

_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")


def codec(name: str | None) -> str | None:
    """Python's name for an encoding a server declares (``text/plain; charset=KOI8-R``), or None
    for one it does not know or that is not a text encoding (``charset=base64``)."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip("\"'"))
        b"-".decode(info.name, "ignore")  # LookupError for base64, hex, zlib, rot13 ...
    except (LookupError, ValueError):
        return None
    return info.name


def decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    elif data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="replace")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            from charset_normalizer import from_bytes

            best = from_bytes(data[:1_000_000]).best()
            encoding = best.encoding if best is not None else "utf-8"
            text = data.decode(encoding, errors="replace")
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def parse(data: bytes, limits: Limits) -> list[Block]:
    text = decode(data)
    if len(text) > limits.max_chars:
        raise ParseError("too_much_text", f"More than {limits.max_chars:,} characters.")
    return [Block(p.strip()) for p in _PARAGRAPHS.split(text) if p.strip()]

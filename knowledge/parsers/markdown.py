"""Markdown: sections by ATX (``#``) and setext headings, paragraphs and lists by blank lines,
fenced code blocks kept whole. A heading with no text under it is a block of its own."""

from __future__ import annotations

import re

from knowledge.parsers import Block, Limits, Outline, ParseError
from knowledge.parsers.text import decode

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])[ \t]")


def parse(data: bytes, limits: Limits) -> list[Block]:
    text = decode(data)
    if len(text) > limits.max_chars:
        raise ParseError("too_much_text", f"More than {limits.max_chars:,} characters.")
    outline = Outline()
    buffer: list[str] = []
    fence: str | None = None

    def flush(kind: str = "paragraph") -> None:
        if buffer and "".join(buffer).strip():
            is_list = all(_LIST.match(line) or line.startswith((" ", "\t")) for line in buffer)
            outline.add(
                "\n".join(buffer).strip(), "list" if is_list and kind == "paragraph" else kind
            )
        buffer.clear()

    def enter(level: int, title: str) -> None:
        outline.heading(level, title.strip())

    for line in text.split("\n"):
        if fence is not None:
            buffer.append(line)
            if line.strip().startswith(fence):
                flush("code")
                fence = None
            continue
        fenced = _FENCE.match(line)
        if fenced:
            flush()
            fence = fenced.group(1)[0] * 3
            buffer.append(line)
            continue
        heading = _ATX.match(line)
        if heading:
            flush()
            enter(len(heading.group(1)), heading.group(2))
            continue
        if _SETEXT.match(line) and len(buffer) == 1 and buffer[0].strip():
            title = buffer.pop()
            enter(1 if line.strip().startswith("=") else 2, title)
            continue
        if not line.strip():
            flush()
            continue
        buffer.append(line)
    flush("code" if fence is not None else "paragraph")
    return outline.blocks()

"""Markdown: sections by ATX (``#``) and setext headings, paragraphs and lists by blank lines,
fenced code blocks kept whole."""

from __future__ import annotations

import re

from knowledge.parsers import Block, Limits, ParseError
from knowledge.parsers.text import decode

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])[ \t]")


def parse(data: bytes, limits: Limits) -> list[Block]:
    text = decode(data)
    if len(text) > limits.max_chars:
        raise ParseError("too_much_text", f"More than {limits.max_chars:,} characters.")
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []
    fence: str | None = None

    def headings() -> list[str]:
        return [title for _level, title in path]

    def flush(kind: str = "paragraph") -> None:
        if buffer and "".join(buffer).strip():
            is_list = all(_LIST.match(line) or line.startswith((" ", "\t")) for line in buffer)
            blocks.append(
                Block(
                    "\n".join(buffer).strip(),
                    "list" if is_list and kind == "paragraph" else kind,
                    None,
                    headings(),
                )
            )
        buffer.clear()

    def enter(level: int, title: str) -> None:
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title.strip()))

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
    return blocks

"""Document parsers: bytes in, a list of :class:`Block` out, one module per format.

Parsers import nothing from Django: they run in a child process with resource limits
(:mod:`knowledge.parsers.sandbox`), so that a decompression bomb or a parser bug costs that
process, not the worker. Every failure is a :class:`ParseError` with a stable code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MARKDOWN = "text/markdown"
JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain"
SUPPORTED = (PDF, DOCX, MARKDOWN, JSON, HTML, TEXT)
TEXT_TYPES = (MARKDOWN, JSON, HTML, TEXT)  # decoded from bytes with an encoding (parsers.text)


@dataclass
class Block:
    """A unit of document structure: a paragraph, a heading's section text, a table row, a
    code block, a JSON record. Chunking packs blocks; it never splits a block it can fit."""

    text: str
    kind: str = "paragraph"  # paragraph | code | table | record | list | heading
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Outline:
    """The blocks of a document with headings, as its parser walks it. A heading is the heading
    path of the text under it, not text of its own; a heading with no text under it at all (a
    page that is only a title, an empty last section) becomes a ``heading`` block, so that its
    words are still indexed."""

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._path: list[tuple[int, str, int]] = []  # level, title, index of its own block
        self._covered: set[int] = set()  # heading blocks whose heading has text under it

    def heading(self, level: int, title: str) -> None:
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._blocks.append(Block(title, "heading", None, self.path()))
        self._path.append((level, title, len(self._blocks) - 1))

    def path(self) -> list[str]:
        return [title for _level, title, _index in self._path]

    def add(
        self,
        text: str,
        kind: str = "paragraph",
        page: int | None = None,
        under: Sequence[str] = (),
    ) -> None:
        """A block of text under the current headings (and ``under``, headings of its own)."""
        self._covered.update(index for _level, _title, index in self._path)
        self._blocks.append(Block(text, kind, page, [*self.path(), *under]))

    def blocks(self) -> list[Block]:
        return [block for i, block in enumerate(self._blocks) if i not in self._covered]


@dataclass(frozen=True)
class Limits:
    max_pages: int = 2000
    max_chars: int = 5_000_000
    max_json_depth: int = 64
    max_json_string: int = 100_000
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: int = 200


class ParseError(Exception):
    """A document that cannot be turned into text; ``code`` and ``message`` are shown to users,
    ``detail`` (what the parser library raised, say) goes to the worker's log only."""

    def __init__(self, code: str, message: str, detail: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


_SURROGATES = re.compile("[\ud800-\udfff]")
# Invisible characters that glue to the words around them, so that full text search indexes
# 'pass\u200bword' and finds neither "password" nor "pass": zero width space, soft hyphen, word
# joiner, byte order mark and the bidirectional controls (LRM, RLM, embeddings, overrides,
# isolates). Not ZWNJ or ZWJ (U+200C, U+200D): they are spelling in Persian and Indic scripts
# and hold emoji sequences together.
_INVISIBLE = re.compile("[\u00ad\u200b\u200e\u200f\u2060\ufeff\u202a-\u202e\u2066-\u2069]")


def normalize_text(text: str) -> str:
    """The one form of text that is stored and searched (documents at ingestion, queries at
    retrieval): without the invisible characters above, in NFC, so that an "é" typed as e +
    U+0301 finds the precomposed one and vice versa. Not NFKC: that would change what readers
    see (m² → m2, ﬁ → fi, full-width letters)."""
    return unicodedata.normalize("NFC", _INVISIBLE.sub("", text))


def clean_text(text: str) -> str:
    """Text PostgreSQL accepts (no NUL, no lone UTF-16 surrogates: JSON escapes can carry them),
    in the form it is searched in (:func:`normalize_text`)."""
    return normalize_text(_SURROGATES.sub("\ufffd", text.replace("\x00", "")))


def parse(content_type: str, data: bytes, limits: Limits) -> list[Block]:
    if content_type == PDF:
        from knowledge.parsers import pdf as module
    elif content_type == DOCX:
        from knowledge.parsers import docx as module  # type: ignore[no-redef]
    elif content_type == MARKDOWN:
        from knowledge.parsers import markdown as module  # type: ignore[no-redef]
    elif content_type == JSON:
        from knowledge.parsers import json_records as module  # type: ignore[no-redef]
    elif content_type == HTML:
        from knowledge.parsers import html as module  # type: ignore[no-redef]
    elif content_type == TEXT:
        from knowledge.parsers import text as module  # type: ignore[no-redef]
    else:
        raise ParseError("unsupported_type", f"No parser for {content_type}.")
    blocks = module.parse(data, limits)
    total = 0
    kept: list[Block] = []
    for block in blocks:
        text = clean_text(block.text).strip()
        block.heading_path = [clean_text(h) for h in block.heading_path]
        if not text:
            continue
        total += len(text)
        if total > limits.max_chars:
            raise ParseError(
                "too_much_text", f"The document has more than {limits.max_chars:,} characters."
            )
        block.text = text
        kept.append(block)
    if not kept:
        raise ParseError("no_text", "The document contains no extractable text.")
    return kept

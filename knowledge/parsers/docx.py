"""DOCX with python-docx: headings (``Heading N`` styles) form the heading path (a heading with no
text under it is a block of its own); paragraphs, list items and table rows in reading order.

The text is read from the XML, not from python-docx's paragraph and cell objects, which see only
the runs and hyperlinks directly in a paragraph and the paragraphs directly in a cell. So the
text of content controls (``w:sdt``), tracked insertions and moves, smart tags and fields is
read, deleted text and field codes are not; a table row is ``a | b | c`` of its cells' text,
and a table inside a cell (at any depth) follows its row as rows of its own.

The zip is checked first: too large unpacked or too compressed → ``zip_bomb``; not a zip or no
``word/document.xml`` → ``corrupt_file``. python-docx parses XML with entity resolution off (no
billion laughs)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from knowledge.parsers import Block, Limits, Outline, ParseError

_HEADING = re.compile(r"^(?:Heading|Überschrift|Titre|Título)\s*(\d)$", re.I)

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
P, T, TBL, TR, TC = f"{W}p", f"{W}t", f"{W}tbl", f"{W}tr", f"{W}tc"
# Run content that stands for a character, as in python-docx's ``Run.text``.
_CHARACTERS = {f"{W}tab": "\t", f"{W}ptab": "\t", f"{W}br": "\n", f"{W}cr": "\n",
               f"{W}noBreakHyphen": "-"}  # fmt: skip
# Never text: properties, deleted or moved-away content, field codes; drawings and objects.
_SKIP = frozenset(
    f"{W}{name}"
    for name in (
        "pPr", "rPr", "tblPr", "tblGrid", "trPr", "tcPr", "sectPr", "sdtPr", "sdtEndPr",
        "del", "moveFrom", "delText", "instrText", "delInstrText", "drawing", "pict", "object",
        "ruby",
    )
) | {"{http://schemas.openxmlformats.org/markup-compatibility/2006}AlternateContent"}  # fmt: skip


def check_zip(data: bytes, limits: Limits) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ParseError("corrupt_file", "Not a valid DOCX (zip) file.") from None
    with archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        packed = max(1, sum(info.compress_size for info in infos))
        if total > limits.max_unzipped_bytes or total / packed > limits.max_zip_ratio:
            raise ParseError("zip_bomb", "The DOCX unpacks to far more than its size.")
        if "word/document.xml" not in archive.namelist():
            raise ParseError("corrupt_file", "The zip file is not a Word document.")


def parse(data: bytes, limits: Limits) -> list[Block]:
    try:
        return _parse(data, limits)
    except ParseError:
        raise
    except Exception as exc:  # python-docx meets documents it cannot read in many ways
        raise _unreadable(exc) from None


def _unreadable(exc: Exception) -> ParseError:
    if "amplification" in str(exc):
        # libxml2 refuses entities that expand far beyond the input ("billion laughs").
        return ParseError("xml_bomb", "The document's XML entities expand far beyond its size.")
    return ParseError(
        "corrupt_file",
        "The DOCX cannot be read; the file is damaged or not a Word document.",
        type(exc).__name__,
    )


def _parse(data: bytes, limits: Limits) -> list[Block]:
    import docx

    check_zip(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise _unreadable(exc) from None
    reader = _Reader(document)
    reader.body(document.element.body, headings=True)
    return reader.outline.blocks()


def _children(element: Any, tag: str) -> Iterator[Any]:
    """``tag`` children of ``element``, also those wrapped in content controls or custom XML."""
    for child in element:
        if child.tag == tag:
            yield child
        elif isinstance(child.tag, str) and child.tag not in _SKIP and child.tag not in (P, TBL):
            yield from _children(child, tag)


def _inline(element: Any) -> str:
    """The text of a paragraph (or of an element in one), at any depth of wrapping elements."""
    parts: list[str] = []
    for child in element:
        tag = child.tag
        if tag == T:
            parts.append(child.text or "")
        elif tag in _CHARACTERS:
            parts.append(_CHARACTERS[tag])
        elif isinstance(tag, str) and tag not in _SKIP:  # runs, hyperlinks, w:ins, w:sdt, ...
            parts.append(_inline(child))
    return "".join(parts)


class _Reader:
    def __init__(self, document: Any) -> None:
        self.document = document
        self.outline = Outline()
        self._styles: dict[str | None, str] = {}
        self._cells: dict[Any, str] = {}  # w:tc → its text; a merged cell repeats in a row

    def style(self, paragraph: Any) -> str:
        from docx.enum.style import WD_STYLE_TYPE

        found = paragraph.find(f"{W}pPr/{W}pStyle")
        style_id = found.get(f"{W}val") if found is not None else None
        if style_id not in self._styles:
            style = self.document.part.get_style(style_id, WD_STYLE_TYPE.PARAGRAPH)
            self._styles[style_id] = (style.name if style is not None else "") or ""
        return self._styles[style_id]

    def body(self, container: Any, *, headings: bool) -> None:
        """Block-level content: paragraphs, tables, and whatever wraps them (``w:sdt``...)."""
        for child in container:
            if child.tag == P:
                self.paragraph(child, headings=headings)
            elif child.tag == TBL:
                self.table(child)
            elif isinstance(child.tag, str) and child.tag not in _SKIP:
                self.body(child, headings=headings)

    def paragraph(self, paragraph: Any, *, headings: bool) -> None:
        text = _inline(paragraph).strip()
        if text:
            style = self.style(paragraph)
            heading = _HEADING.match(style)
            if headings and (heading or style == "Title"):
                self.outline.heading(int(heading.group(1)) if heading else 0, text)
            else:
                self.outline.add(text, "list" if "List" in style else "paragraph")

    def table(self, tbl: Any) -> None:
        """One ``a | b | c`` block a row; tables in its cells follow the row they are in."""
        from docx.table import Table

        table = Table(tbl, self.document)
        for tr in _children(tbl, TR):
            nested: list[Any] = []
            cells: list[str] = []
            for tc in _row_cells(tr, table):
                if tc not in self._cells:
                    texts: list[str] = []
                    self.cell(tc, texts, nested)
                    self._cells[tc] = " ".join(" ".join(texts).split())
                cells.append(self._cells[tc])
            deduped = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
            if any(deduped):
                self.outline.add(" | ".join(deduped), "table")
            for inner in nested:
                self.table(inner)

    def cell(self, container: Any, texts: list[str], tables: list[Any]) -> None:
        """A cell's paragraphs' text, in any order and wrapping, and the tables in it."""
        for child in container:
            if child.tag == P:
                texts.append(_inline(child))
            elif child.tag == TBL:
                tables.append(child)
            elif isinstance(child.tag, str) and child.tag not in _SKIP:
                self.cell(child, texts, tables)


def _row_cells(tr: Any, table: Any) -> list[Any]:
    """The row's ``w:tc`` elements as python-docx lays them out on the table grid (a cell that
    spans columns repeats, a vertically merged one is the cell it continues), or as they stand
    where it cannot: a malformed grid, cells or rows wrapped in content controls."""
    from docx.table import _Row

    cells = list(_children(tr, TC))
    if len(cells) == len(tr.findall(TC)) and tr.getparent().tag == TBL:
        try:
            return [cell._tc for cell in _Row(tr, table).cells]
        except (ValueError, IndexError, KeyError):
            pass
    return cells

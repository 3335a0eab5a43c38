"""DOCX with python-docx: headings (``Heading N`` styles) form the heading path (a heading with no
text under it is a block of its own); paragraphs, list items and table rows in reading order.
The zip is checked first: too large unpacked or too compressed → ``zip_bomb``; not a zip or no
``word/document.xml`` → ``corrupt_file``.
python-docx parses XML with entity resolution off (no billion laughs)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from knowledge.parsers import Block, Limits, Outline, ParseError

_HEADING = re.compile(r"^(?:Heading|Überschrift|Titre|Título)\s*(\d)$", re.I)


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


def _row_cells(row: Any) -> list[str]:
    """Cell texts; from the raw XML where python-docx cannot lay out a malformed grid."""
    try:
        return [" ".join(cell.text.split()) for cell in row.cells]
    except (ValueError, IndexError, KeyError):
        from docx.oxml.ns import qn

        return [
            " ".join("".join(t.text or "" for t in tc.iter(qn("w:t"))).split())
            for tc in row._tr.tc_lst
        ]


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
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise _unreadable(exc) from None
    outline = Outline()
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = item.text.strip()
            if not text:
                continue
            style = item.style.name if item.style is not None else ""
            heading = _HEADING.match(style or "")
            if heading or style == "Title":
                outline.heading(int(heading.group(1)) if heading else 0, text)
                continue
            outline.add(text, "list" if "List" in (style or "") else "paragraph")
        elif isinstance(item, Table):
            for row in item.rows:
                cells = _row_cells(row)
                deduped = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
                if any(deduped):
                    outline.add(" | ".join(deduped), "table")
    return outline.blocks()

"""PDF with pdfplumber: text per page (page numbers kept), tables as ``a | b | c`` rows.
Encrypted → ``encrypted_pdf``; no text layer (scans) → ``no_text``; unreadable → ``corrupt_file``;
more pages than allowed → ``too_many_pages``; a stream that decompresses past the parser's
memory limit → ``parse_memory``."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from knowledge.parsers import Block, Limits, ParseError

_PARAGRAPHS = re.compile(r"\n\s*\n+")
UNREADABLE = "The PDF cannot be read; the file is damaged or not a valid PDF."


def _outside(boxes: list[tuple[float, float, float, float]]) -> Callable[[dict[str, Any]], bool]:
    """Page objects outside every table (tables are read as rows, not twice as text)."""

    def keep(obj: dict[str, Any]) -> bool:
        x, top = obj.get("x0", 0), obj.get("top", 0)
        return not any(b[0] <= x <= b[2] and b[1] <= top <= b[3] for b in boxes)

    return keep


def _caused_by(exc: BaseException, *kinds: type[BaseException]) -> bool:
    """pdfplumber wraps pdfminer's errors: PdfminerException(PDFPasswordIncorrect())."""
    causes = [exc, *[a for a in exc.args if isinstance(a, BaseException)]]
    return any(isinstance(cause, kinds) for cause in causes)


def parse(data: bytes, limits: Limits) -> list[Block]:
    import pdfplumber
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    def is_encryption(exc: BaseException) -> bool:
        return _caused_by(exc, PDFPasswordIncorrect, PDFEncryptionError)

    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except Exception as exc:  # pdfminer raises many unrelated types for broken files
        if is_encryption(exc):
            raise ParseError("encrypted_pdf", "The PDF is encrypted.") from None
        raise ParseError("corrupt_file", UNREADABLE, type(exc).__name__) from None
    blocks: list[Block] = []
    with pdf:
        try:
            pages = pdf.pages
        except Exception as exc:
            if is_encryption(exc):
                raise ParseError("encrypted_pdf", "The PDF is encrypted.") from None
            raise ParseError("corrupt_file", UNREADABLE, type(exc).__name__) from None
        if len(pages) > limits.max_pages:
            raise ParseError("too_many_pages", f"More than {limits.max_pages} pages.")
        for number, page in enumerate(pages, start=1):
            try:
                # Ruled tables need lines or rectangles; pages without them skip the search.
                tables = page.find_tables() if (page.lines or page.rects) else []
                table_boxes = [t.bbox for t in tables]
                outside = page.filter(_outside(table_boxes)) if table_boxes else page
                text = outside.extract_text() or ""
                rows = [row for table in tables for row in (table.extract() or [])]
            except Exception as exc:
                if _caused_by(exc, MemoryError):  # a decompression bomb, wrapped by pdfplumber
                    raise ParseError(
                        "parse_memory", f"Page {number} needs more memory than allowed."
                    ) from None
                raise ParseError(
                    "corrupt_file",
                    f"Page {number} of the PDF cannot be read; the file may be damaged.",
                    type(exc).__name__,
                ) from None
            finally:
                page.flush_cache()
            for paragraph in _PARAGRAPHS.split(text):
                if paragraph.strip():
                    blocks.append(Block(" ".join(paragraph.split()), "paragraph", number))
            for row in rows:
                cells = [" ".join((cell or "").split()) for cell in row]
                if any(cells):
                    blocks.append(Block(" | ".join(cells), "table", number))
    if not any(b.text.strip() for b in blocks):
        raise ParseError("no_text", "The PDF has no extractable text (a scan without OCR?).")
    return blocks

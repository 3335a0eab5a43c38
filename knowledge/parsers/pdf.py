"""PDF with pdfplumber: text per page (page numbers kept), tables as ``a | b | c`` rows.
Encrypted → ``encrypted_pdf``; no text layer (scans) → ``no_text``; unreadable → ``corrupt_file``;
more pages than allowed → ``too_many_pages``; a stream that decompresses past the parser's
memory limit → ``parse_memory``.

An ICCBased colour space without its required ``/N`` (the profile's number of components) fails
pdfminer's whole page (pdfminer.six#1079, open upstream). A page that fails is read once more
after such colour spaces in its resources, and in those of the forms it draws, are given the
``/N`` their profile's header says (else their ``/Alternate`` space's, else RGB's 3): the count
only decides how many operands a colour operator takes, never the text."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from knowledge.parsers import Block, Limits, ParseError

_PARAGRAPHS = re.compile(r"\n\s*\n+")
# An ICC profile's colour space signature (header bytes 16-19) → its number of components.
_ICC_COMPONENTS = {
    b"GRAY": 1, b"RGB ": 3, b"CMYK": 4, b"Lab ": 3, b"XYZ ": 3, b"YCbr": 3, b"Yxy ": 3,
    b"Luv ": 3, b"HSV ": 3, b"HLS ": 3, b"CMY ": 3, **{b"%XCLR" % n: n for n in range(2, 16)},
}  # fmt: skip
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


def _icc_without_components(resources: object) -> list[Any]:
    """The ICCBased profile streams without ``/N`` named in ``resources`` (a page's) and in
    the resources of the form XObjects they draw, at any depth, each once."""
    from pdfminer.pdftypes import PDFStream, dict_value, resolve1
    from pdfminer.psparser import literal_name

    found: dict[int, Any] = {}
    forms: set[object] = set()  # by object number: forms that draw each other are read once
    pending = [resources]
    while pending:
        current = dict_value(pending.pop())
        for spec in dict_value(current.get("ColorSpace")).values():
            spec = resolve1(spec)
            if isinstance(spec, list) and len(spec) >= 2 and literal_name(spec[0]) == "ICCBased":
                stream = resolve1(spec[1])
                if isinstance(stream, PDFStream) and "N" not in stream.attrs:
                    found[id(stream)] = stream
        for xobject in dict_value(current.get("XObject")).values():
            xobject = resolve1(xobject)
            if not isinstance(xobject, PDFStream) or "Resources" not in xobject.attrs:
                continue
            key = xobject.objid if xobject.objid is not None else id(xobject)
            if key not in forms:
                forms.add(key)
                pending.append(xobject.attrs["Resources"])
    return list(found.values())


def _icc_components(stream: Any) -> int:
    """How many components an ICC profile stream without ``/N`` has."""
    from pdfminer.pdfcolor import PREDEFINED_COLORSPACE
    from pdfminer.psparser import PSLiteral

    try:
        header = stream.get_data()[:20]
    except MemoryError:
        raise
    except Exception:  # a profile that does not decode: the alternate says it, or nothing does
        header = b""
    if header[16:20] in _ICC_COMPONENTS:
        return _ICC_COMPONENTS[header[16:20]]
    alternate = stream.attrs.get("Alternate")
    if isinstance(alternate, PSLiteral) and str(alternate.name) in PREDEFINED_COLORSPACE:
        return PREDEFINED_COLORSPACE[str(alternate.name)].ncomponents
    return 3


def _page_content(page: Any) -> tuple[str, list[list[str | None]]]:
    """The page's text outside its ruled tables, and the tables' rows."""
    # Ruled tables need lines or rectangles; pages without them skip the search.
    tables = page.find_tables() if (page.lines or page.rects) else []
    table_boxes = [t.bbox for t in tables]
    outside = page.filter(_outside(table_boxes)) if table_boxes else page
    text = outside.extract_text() or ""
    return text, [row for table in tables for row in (table.extract() or [])]


def _read_page(page: Any) -> tuple[str, list[list[str | None]]]:
    """:func:`_page_content`, once more if the page failed and has ICC profiles without ``/N``
    (given theirs first)."""
    try:
        return _page_content(page)
    except Exception as exc:
        if _caused_by(exc, MemoryError):
            raise
        broken = _icc_without_components(page.page_obj.resources)
        if not broken:
            raise
    for stream in broken:  # the document caches its objects: later pages get them repaired
        stream.attrs["N"] = _icc_components(stream)
    page.flush_cache()
    return _page_content(page)


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
                text, rows = _read_page(page)
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

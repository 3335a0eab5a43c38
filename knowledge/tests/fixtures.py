"""Documents made by the tests themselves (no third-party files in the repository)."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable
from typing import Any


def table_stream(
    rows: list[list[str]], *, x: int = 72, top: int = 700, width: int = 120, height: int = 24
) -> str:
    """Content-stream operators for a ruled table (lines around every cell) with its text."""
    columns = len(rows[0])
    ops = ["0.5 w"]
    for r in range(len(rows) + 1):
        y = top - r * height
        ops.append(f"{x} {y} m {x + columns * width} {y} l S")
    for c in range(columns + 1):
        ops.append(f"{x + c * width} {top} m {x + c * width} {top - len(rows) * height} l S")
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            ops.append(
                f"BT /F1 10 Tf {x + c * width + 6} {top - (r + 1) * height + 8} Td ({cell}) Tj ET"
            )
    return "\n".join(ops)


def make_pdf(pages: list[str], *, raw: list[str] | None = None) -> bytes:
    """A valid PDF with one line of Helvetica text per page (hand-written objects and xref);
    ``raw`` adds content-stream operators to the pages (tables, lines)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        extra = raw[i] if raw and i < len(raw) else ""
        stream = f"BT /F1 12 Tf 72 750 Td ({escaped}) Tj ET\n{extra}".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _write_pdf(objects)


def make_pdf_columns(left: list[str], right: list[str], *, title: str = "") -> bytes:
    """One page set in two columns, as a journal or a handbook is: ``left``'s lines at x=72,
    ``right``'s at x=320, line by line at the same heights (10 pt Helvetica, 14 pt apart), under
    an optional ``title`` across the page."""

    def line(x: int, y: int, text: str) -> str:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"1 0 0 1 {x} {y} Tm ({escaped}) Tj"

    ops = ["BT /F1 10 Tf"]
    if title:
        ops.append(line(72, 740, title))
    for n, (a, b) in enumerate(zip(left, right, strict=True)):
        ops += [line(72, 700 - 14 * n, a), line(320, 700 - 14 * n, b)]
    stream = " \n".join([*ops, "ET"]).encode("latin-1")  # a byte per character: the font's codes
    return _one_page_pdf(stream)


def typeset(words: list[str], *, gap: int = 200, tracking: float = 0) -> str:
    """A ``TJ`` array that sets ``words`` as TeX does, without a space character: each word
    moved ``gap`` thousandths of an em right of the one before (a fifth of an em by default);
    ``tracking`` (points) apart between letters too, as ``Tc`` adds it (a letter-spaced
    heading)."""

    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    array = "[" + f" -{gap} ".join(f"({escaped(word)})" for word in words) + "] TJ"
    return f"{tracking} Tc {array} 0 Tc" if tracking else array


def make_pdf_typeset(
    lines: list[tuple[float, float, float, str]], *, raw: str = "", font: str = "Helvetica"
) -> bytes:
    """One page (612 x 792 pt) with each ``(x, y, size, TJ)`` line drawn at ``x``, ``y`` in
    ``font`` at ``size`` (a ``TJ`` from :func:`typeset`), then the content-stream operators
    ``raw`` (rules, a table)."""
    ops = [f"/F1 {size} Tf 1 0 0 1 {x} {y} Tm {line}" for x, y, size, line in lines]
    stream = " \n".join(["BT", *ops, "ET", raw]).encode("latin-1")
    return _one_page_pdf(stream, font=font)


def _one_page_pdf(stream: bytes, *, font: str = "Helvetica") -> bytes:
    """A letter-size page drawing the content ``stream`` with ``font`` as ``/F1``."""
    return _write_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream("", stream),
            f"<< /Type /Font /Subtype /Type1 /BaseFont /{font} >>".encode(),
        ]
    )


def _write_pdf(objects: list[bytes]) -> bytes:
    """Numbered objects (1 = catalog), an xref table and a trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def _stream(dictionary: str, data: bytes) -> bytes:
    return f"<< {dictionary} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def make_pdf_icc_without_components() -> bytes:
    """Two pages whose ICCBased colour spaces lack the required ``/N``: page 1's in the page's
    resources (an RGB profile), page 2's in those of the form XObject that draws its text (a
    CMYK one). Only the profiles' 128-byte headers are there; the colour space signature (bytes
    16-19) is what says how many components the profile has."""

    def profile(signature: bytes) -> bytes:
        return b"\0" * 12 + b"mntr" + signature + b"XYZ " + b"\0" * 36 + b"acsp" + b"\0" * 68

    font = "/Font << /F1 8 0 R >>"
    form = b"/CS1 cs 0 0 0 1 scn BT /F1 12 Tf 72 750 Td (Exchanges take ten days.) Tj ET"
    return _write_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            f"/Resources << {font} /ColorSpace << /CS0 [/ICCBased 9 0 R] >> >> >>".encode(),
            _stream(
                "",
                b"/CS0 cs 0.2 0.4 0.6 scn BT /F1 12 Tf 72 750 Td (Refunds take five days.) Tj ET",
            ),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R "
            b"/Resources << /XObject << /Fm0 7 0 R >> >> >>",
            _stream("", b"/Fm0 Do"),
            _stream(
                "/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                f"/Resources << {font} /ColorSpace << /CS1 [/ICCBased 10 0 R] >> >>",
                form,
            ),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            _stream("", profile(b"RGB ")),
            _stream("", profile(b"CMYK")),
        ]
    )


def make_encrypted_pdf(pages: list[str]) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Handbook", level=1)
    document.add_paragraph("Welcome to the handbook.")
    document.add_heading("Leave", level=2)
    document.add_paragraph("Ask your manager before you take leave.")
    document.add_paragraph("Twenty days a year", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Kind", "Days"
    table.cell(1, 0).text, table.cell(1, 1).text = "Vacation", "20"
    return save_docx(document)


def save_docx(document: Any) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_zip_bomb(unpacked_mb: int = 20) -> bytes:
    """A DOCX-shaped zip whose document.xml unpacks to ``unpacked_mb`` MB of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(unpacked_mb):
                member.write(block)
    return out.getvalue()


def deep_json(depth: int = 10_000) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def make_pdf_flate_bomb(unpacked_mb: int = 400) -> bytes:
    """A one-page PDF whose content stream inflates to ``unpacked_mb`` MB (under 1 MB on disk)."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"BT /F1 12 Tf 72 750 Td (Bomb.) Tj ET\n")]
    block = b" " * (1024 * 1024)
    parts += [packer.compress(block) for _ in range(unpacked_mb)]
    stream = b"".join([*parts, packer.flush()])
    return _write_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def billion_laughs(root: str, levels: int = 9) -> str:
    """A DOCTYPE whose entity ``&lol9;`` expands to 10**levels "lol"s."""
    entities = "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % ("" if i == 1 else i - 1)) * 10}">'
        for i in range(1, levels + 1)
    )
    return f'<!DOCTYPE {root} [<!ENTITY lol "lol">{entities}]>'


def make_docx_laughs() -> bytes:
    """:func:`make_docx` with a billion-laughs DOCTYPE in word/document.xml and ``&lol9;`` used."""
    source = zipfile.ZipFile(io.BytesIO(make_docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                prolog, rest = data.replace(b"<w:t>", b"<w:t>&lol9;", 1).split(b"?>", 1)
                data = prolog + b"?>" + billion_laughs("w:document").encode() + rest
            archive.writestr(item, data)
    return out.getvalue()


def make_package_without_relationships() -> bytes:
    """A zip with ``word/document.xml`` but none of the parts that make it a Word package."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


OOXML_PREFIXES = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
    "v": "urn:schemas-microsoft-com:vml",
    "c": "http://schemas.openxmlformats.org/drawingml/2006/chart",
}


def make_docx_body(xml: str) -> Any:
    """python-docx's blank document with ``xml`` (WordprocessingML using the prefixes of
    ``OOXML_PREFIXES``) as its body; the caller may add parts before saving it."""
    import docx
    from lxml import etree

    document = docx.Document()
    body = document.element.body
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in OOXML_PREFIXES.items())
    fragment = etree.fromstring(f"<w:body {declarations}>{xml}</w:body>")
    for child in list(fragment):
        body.insert(len(body) - 1, child)  # before the section properties
    return document


def add_notes_part(document: Any, kind: str, notes: str) -> None:
    """A ``word/{kind}s.xml`` part (``kind`` is ``footnote`` or ``endnote``) related to the main
    document, with ``notes`` (``w:footnote`` or ``w:endnote`` elements) in it."""
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part

    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in OOXML_PREFIXES.items())
    xml = f"<w:{kind}s {declarations}>{notes}</w:{kind}s>"
    content_type = CT.WML_FOOTNOTES if kind == "footnote" else CT.WML_ENDNOTES
    relationship = RT.FOOTNOTES if kind == "footnote" else RT.ENDNOTES
    blob = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{xml}'.encode()
    part = Part(PackURI(f"/word/{kind}s.xml"), content_type, blob, document.part.package)
    document.part.relate_to(part, relationship)


def chart_drawing(r_id: str) -> str:
    """A run showing the chart part of relationship ``r_id``, as Word writes one inline."""
    return (
        "<w:r><w:drawing><wp:inline><wp:extent cx='5486400' cy='3200400'/>"
        "<wp:docPr id='1' name='Chart 1'/><a:graphic><a:graphicData "
        "uri='http://schemas.openxmlformats.org/drawingml/2006/chart'>"
        f"<c:chart r:id='{r_id}'/></a:graphicData></a:graphic></wp:inline></w:drawing></w:r>"
    )


def add_chart_part(document: Any, r_id: str, chart: str, *, number: int = 1) -> None:
    """A ``word/charts/chart{number}.xml`` part related to the main document as ``r_id``,
    ``chart`` (the ``c:chart`` element's content, prefixes of ``OOXML_PREFIXES``) in it."""
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part

    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in OOXML_PREFIXES.items())
    xml = f"<c:chartSpace {declarations}><c:chart>{chart}</c:chart></c:chartSpace>"
    blob = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{xml}'.encode()
    uri = PackURI(f"/word/charts/chart{number}.xml")
    part = Part(uri, CT.DML_CHART, blob, document.part.package)
    document.part.rels.add_relationship(RT.CHART, part, r_id)


# Transitional namespaces and their Strict Open XML spellings (ECMA-376 Part 1, Strict).
STRICT_NAMESPACES = {
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main": (
        "http://purl.oclc.org/ooxml/wordprocessingml/main"
    ),
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships": (
        "http://purl.oclc.org/ooxml/officeDocument/relationships"
    ),
    "http://schemas.openxmlformats.org/officeDocument/2006/math": (
        "http://purl.oclc.org/ooxml/officeDocument/math"
    ),
    "http://schemas.openxmlformats.org/drawingml/2006/main": (
        "http://purl.oclc.org/ooxml/drawingml/main"
    ),
    "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing": (
        "http://purl.oclc.org/ooxml/drawingml/wordprocessingDrawing"
    ),
    "http://schemas.openxmlformats.org/drawingml/2006/picture": (
        "http://purl.oclc.org/ooxml/drawingml/picture"
    ),
}


def rewrite_parts(data: bytes, rewrite: Any) -> bytes:
    """The zip ``data`` with each member's bytes passed through ``rewrite(name, content)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            archive.writestr(item, rewrite(item.filename, source.read(item.filename)))
    return out.getvalue()


def as_strict(data: bytes) -> bytes:
    """A DOCX as Word saves it in "Strict Open XML Document" format (namespaces only)."""

    def rewrite(_name: str, content: bytes) -> bytes:
        for transitional, strict in STRICT_NAMESPACES.items():
            content = content.replace(transitional.encode(), strict.encode())
        return content

    return rewrite_parts(data, rewrite)


def as_macro_enabled(data: bytes) -> bytes:
    """A DOCX whose main part has the content type of a ``.docm`` (macros themselves left out)."""
    main = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    docm = b"application/vnd.ms-word.document.macroEnabled.main+xml"
    return rewrite_parts(data, lambda name, content: content.replace(main, docm))


def ingest_interrupted(
    settings: Any, document_id: Any, at_first_window: Callable[[], None]
) -> tuple[str, int]:
    """Ingest a document with the ``openai`` embedder talking to the loopback fake provider,
    calling ``at_first_window`` (on the provider's thread, its connections closed after) as the
    first embeddings request arrives. Returns what the ingestion returned and how many
    embeddings requests were made. ``settings``: pytest-django's fixture."""
    from django.db import connections

    from knowledge.embeddings import get_embedder
    from knowledge.ingestion import document_ingest
    from tests.fake_openai import fake_openai

    def first_window() -> None:
        try:
            if len(fake.requests) == 1:
                at_first_window()
        finally:
            connections.close_all()

    with fake_openai() as fake:
        settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = fake.url, "sk-test"
        settings.EMBEDDING_BACKEND, settings.EMBEDDING_MODEL = "openai", "text-embedding-3-small"
        fake.on_embeddings = first_window
        get_embedder.cache_clear()
        try:
            result = document_ingest(document_id=document_id)
        finally:
            get_embedder.cache_clear()
        windows = [r for r in fake.requests if r["path"].endswith("/embeddings")]
    return result, len(windows)


# Hebrew letters (U+05D0-U+05EA) drawn with codes 128-154 of a simple font whose encoding names
# them (/uni05D0 ...), every glyph 600 units wide: 6 pt at 10 pt.
HEBREW_CODES = {chr(0x05D0 + i): 128 + i for i in range(27)}


def make_pdf_runs(runs: list[tuple[float, float, str]]) -> bytes:
    """One page with each ``(x, y, text)`` drawn at ``x``, ``y`` in the order given, its
    characters left to right as they stand on the page (a glyph 6 pt wide): a right-to-left
    line is given by the runs a word processor draws it in, each run as it looks (visual
    order)."""
    return make_pdf_pages([runs])


def make_pdf_pages(pages: list[list[tuple[float, float, str]]]) -> bytes:
    """:func:`make_pdf_runs` for several pages (612 x 792 pt), each its own runs."""

    def code(ch: str) -> str:
        number = HEBREW_CODES.get(ch, ord(ch))
        return {"(": "\\(", ")": "\\)", "\\": "\\\\"}.get(ch, chr(number))

    count = len(pages)
    font = 3 + 2 * count
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(count))}] "
        f"/Count {count} >>".encode(),
    ]
    for i, runs in enumerate(pages):
        ops = ["BT /F1 10 Tf"]
        for x, y, text in runs:
            ops.append(f"1 0 0 1 {x} {y} Tm ({''.join(map(code, text))}) Tj")
        stream = " \n".join([*ops, "ET"]).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(_stream("", stream))
    names = " ".join(f"/uni{0x05D0 + i:04X}" for i in range(27))
    widths = " ".join(["600"] * 224)
    return _write_pdf(
        [
            *objects,
            f"<< /Type /Font /Subtype /Type1 /BaseFont /TestSans /FirstChar 32 /LastChar 255 "
            f"/Widths [{widths}] /Encoding << /Type /Encoding /BaseEncoding /WinAnsiEncoding "
            f"/Differences [128 {names}] >> /FontDescriptor {font + 1} 0 R >>".encode(),
            b"<< /Type /FontDescriptor /FontName /TestSans /Flags 32 /FontBBox [0 -200 600 800] "
            b"/ItalicAngle 0 /Ascent 800 /Descent -200 /CapHeight 700 /StemV 80 >>",
        ]
    )

"""DOCX with python-docx: headings (``Heading N`` styles) form the heading path (a heading with no
text under it is a block of its own); paragraphs, list items and table rows in reading order.

The text is read from the XML, not from python-docx's paragraph and cell objects, which see only
the runs and hyperlinks directly in a paragraph and the paragraphs directly in a cell. So the
text of content controls (``w:sdt``), tracked insertions and moves, smart tags and fields is
read, deleted text and field codes are not; a table row is ``a | b | c`` of its cells' text,
and a table inside a cell (at any depth) follows its row as rows of its own. Text boxes (in
DrawingML shapes and VML) follow the paragraph they are anchored in, each once: of the branches
of an ``mc:AlternateContent`` (a DrawingML shape and its VML copy) only one is read. Ruby text
is its base text without the phonetic guide. An ``altChunk`` (HTML or plain text imported into
the document) is read with the HTML or text parser; other imported formats are not. A chart
follows the paragraph (or table row) it is anchored in as its title ("Chart: Sales by region")
and a table of the data Word keeps with it: a row of series names, then a row per category
with its values (a chart-only report read as empty before); at most ``_CHART_ROWS`` rows and
``_CHART_SERIES`` series of one chart.

Footnotes and endnotes that the text references are read right after the paragraph (or table
row) with the reference, under the same headings, each once however often it is referenced: a
note qualifies the sentence it hangs on, so it belongs in that sentence's chunk, not in a list at
the end. Notes nobody references, Word's separators and continuation notices, and references in
notes themselves (Word allows none) are not read. A notes part is parsed as python-docx parses
``document.xml``, entities unresolved; a billion laughs there is an ``xml_bomb``, while a notes
part that is not well-formed XML is left out and the rest of the document still read.

Page headers and footers (those the sections use: first, odd and even pages) come after the
body, outside its headings, each paragraph or row once whose text is not in the body already:
they often hold the only mention of a title, an owner or an effective date ("Handbook for
Chapter 13 Standing Trustees ... Effective October 1, 2012"), but repeat it in every section.
Those without a letter (page numbers, rules drawn with underscores) are left out.

The zip is checked first: too large unpacked or too compressed → ``zip_bomb``; not a zip or no
``word/document.xml`` → ``corrupt_file``. A Strict Open XML document (Word's "Strict Open XML
Document" format: the same parts in other namespaces, which python-docx does not know) and a
macro-enabled one (``.docm``, ``.dotm``: another content type for the main part; macros are never
run) are rewritten as a plain DOCX first. python-docx parses XML with entity resolution off (no
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
TEXT_BOX, ALT_CHUNK = f"{W}txbxContent", f"{W}altChunk"
W_ID, W_TYPE = f"{W}id", f"{W}type"
HEADER_REF, FOOTER_REF = f"{W}headerReference", f"{W}footerReference"
# Where a note is referenced → the note's element in its part.
_NOTE_OF = {f"{W}footnoteReference": f"{W}footnote", f"{W}endnoteReference": f"{W}endnote"}
MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
CHART = f"{C}chart"  # in a drawing: the chart part it shows, by relationship id
_CHART_ROWS, _CHART_SERIES = 1000, 50
R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
# Run content that stands for a character, as in python-docx's ``Run.text``.
_CHARACTERS = {f"{W}tab": "\t", f"{W}ptab": "\t", f"{W}br": "\n", f"{W}cr": "\n",
               f"{W}noBreakHyphen": "-"}  # fmt: skip
# Never text: properties, deleted or moved-away content, field codes, ruby's phonetic guide.
_SKIP = frozenset(
    f"{W}{name}"
    for name in (
        "pPr", "rPr", "tblPr", "tblGrid", "trPr", "tcPr", "sectPr", "sdtPr", "sdtEndPr",
        "del", "moveFrom", "delText", "instrText", "delInstrText", "rt", "rubyPr",
    )
)  # fmt: skip
_HTML = ("text/html", "application/xhtml+xml")

# Strict's namespaces and relationship types are the transitional ones under another root:
# http://purl.oclc.org/ooxml/wordprocessingml/main → .../wordprocessingml/2006/main. (Two are also
# spelled differently, extended- and custom-properties; python-docx reads neither part.)
_STRICT = re.compile(rb"http://purl\.oclc\.org/ooxml/(\w+)/(\w+)")
_TRANSITIONAL = rb"http://schemas.openxmlformats.org/\1/2006/\2"
_MAIN = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_MACRO_ENABLED_MAIN = re.compile(
    rb"application/vnd\.ms-word\.(?:document\.macroEnabled|template\.macroEnabledTemplate)\.main\+xml"
)


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
        document = docx.Document(io.BytesIO(_as_transitional(data)))
    except Exception as exc:
        raise _unreadable(exc) from None
    reader = _Reader(document, limits, _notes(document))
    reader.body(document.element.body, headings=True)
    blocks = reader.outline.blocks()
    return [*blocks, *_headers_and_footers(document, limits, blocks)]


def _as_transitional(data: bytes) -> bytes:
    """A Strict or macro-enabled package rewritten as a plain DOCX; any other unchanged."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        types = archive.read("[Content_Types].xml")
        strict = _STRICT.search(archive.read("_rels/.rels")) is not None
        if not strict and not _MACRO_ENABLED_MAIN.search(types):
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
            for info in archive.infolist():
                content = archive.read(info)
                if info.filename == "[Content_Types].xml":
                    content = _MACRO_ENABLED_MAIN.sub(_MAIN, content)
                if strict and info.filename.endswith((".xml", ".rels")):
                    content = _STRICT.sub(_TRANSITIONAL, content)
                copy.writestr(info.filename, content)
    return out.getvalue()


def _notes(document: Any) -> dict[tuple[str, str], Any]:
    """The footnotes and endnotes a reference can point to, by (tag, ``w:id``)."""
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.oxml.parser import parse_xml
    from lxml import etree

    notes: dict[tuple[str, str], Any] = {}
    parts = dict.fromkeys(  # each part once, however many relationships point to it
        rel.target_part
        for rel in document.part.rels.values()
        if not rel.is_external and rel.reltype in (RT.FOOTNOTES, RT.ENDNOTES)
    )
    for part in parts:
        try:
            root = parse_xml(part.blob)  # python-docx's parser, as for document.xml
        except etree.XMLSyntaxError as exc:
            if "amplification" in str(exc):
                raise _unreadable(exc) from None
            continue  # a damaged notes part costs its notes, not the document
        for note in root:
            if note.tag in _NOTE_OF.values() and note.get(W_TYPE, "normal") == "normal":
                notes.setdefault((note.tag, note.get(W_ID, "")), note)
    return notes


def _headers_and_footers(document: Any, limits: Limits, body: list[Block]) -> list[Block]:
    """The sections' page headers and footers (parsed by python-docx with the document), each
    part once and each text once that is not in ``body`` already (as text or heading); no
    heading path, nothing without a letter."""
    from docx.opc.part import XmlPart

    related = document.part.related_parts
    parts = dict.fromkeys(
        related[r_id]
        for reference in document.element.body.iter(HEADER_REF, FOOTER_REF)
        if (r_id := reference.get(R_ID)) in related
    )
    reader = _Reader(document, limits, {})  # no notes in headers or footers
    for part in parts:
        if isinstance(part, XmlPart):
            reader.body(part.element, headings=False)
    candidates = reader.outline.blocks()
    if not candidates:
        return []
    seen = {" ".join(text.split()) for b in body for text in [b.text, *b.heading_path]}
    blocks: list[Block] = []
    for block in candidates:
        key = " ".join(block.text.split())
        if key not in seen and any(character.isalpha() for character in key):
            seen.add(key)
            blocks.append(block)
    return blocks


def _content(element: Any) -> Iterator[Any]:
    """The child elements of ``element``, an ``mc:AlternateContent`` replaced by the children of
    the first of its branches that has text or a chart (a DrawingML text box's VML fallback is
    a copy)."""
    for child in element:
        if child.tag == f"{MC}AlternateContent":
            for branch in child:
                has_text = next(branch.iter(T, CHART), None) is not None
                if branch.tag in (f"{MC}Choice", f"{MC}Fallback") and has_text:
                    yield from _content(branch)
                    break
        elif isinstance(child.tag, str) and child.tag not in _SKIP:
            yield child


def _children(element: Any, tag: str) -> Iterator[Any]:
    """``tag`` children of ``element``, also those wrapped in content controls or custom XML."""
    for child in _content(element):
        if child.tag == tag:
            yield child
        elif child.tag not in (P, TBL, TEXT_BOX):
            yield from _children(child, tag)


def _inline(element: Any, anchored: list[Any]) -> str:
    """The text of a paragraph (or of an element in one), at any depth of wrapping elements;
    the text boxes, charts and note references in it are added to ``anchored``, in document
    order."""
    parts: list[str] = []
    for child in _content(element):
        tag = child.tag
        if tag == T:
            parts.append(child.text or "")
            # After an entity reference (entities are not resolved): the text that follows it.
            parts.extend(reference.tail or "" for reference in child)
        elif tag in _CHARACTERS:
            parts.append(_CHARACTERS[tag])
        elif tag in (TEXT_BOX, CHART) or tag in _NOTE_OF:
            anchored.append(child)
        else:  # runs, hyperlinks, w:ins, w:sdt, w:ruby, drawings, ...
            parts.append(_inline(child, anchored))
    return "".join(parts)


class _Reader:
    def __init__(self, document: Any, limits: Limits, notes: dict[tuple[str, str], Any]) -> None:
        self.document = document
        self.limits = limits
        self.notes = notes  # a note is removed once read
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
        for child in _content(container):
            if child.tag == P:
                self.paragraph(child, headings=headings)
            elif child.tag == TBL:
                self.table(child)
            elif child.tag == ALT_CHUNK:
                self.alt_chunk(child)
            else:
                self.body(child, headings=headings)

    def paragraph(self, paragraph: Any, *, headings: bool) -> None:
        anchored: list[Any] = []
        text = _inline(paragraph, anchored).strip()
        if text:
            style = self.style(paragraph)
            heading = _HEADING.match(style)
            if headings and (heading or style == "Title"):
                self.outline.heading(int(heading.group(1)) if heading else 0, text)
            else:
                self.outline.add(text, "list" if "List" in style else "paragraph")
        for element in anchored:
            if element.tag == TEXT_BOX:  # a heading style in one is no heading of the document
                self.body(element, headings=False)
            else:
                self.follow(element)

    def follow(self, element: Any) -> None:
        """What a paragraph or row points to and is read after it: a chart or a note."""
        if element.tag == CHART:
            self.chart(element)
        else:
            self.note(element)

    def chart(self, element: Any) -> None:
        """The chart's title, then its data as table rows: series names, then per category its
        values, from the copy of the data Word keeps in the chart part (``c:strCache``,
        ``c:numCache``). A chart part that is not well-formed is left out, as a notes part is."""
        from docx.oxml.parser import parse_xml
        from lxml import etree

        part = self.document.part.related_parts.get(element.get(R_ID))
        if part is None:
            return
        try:
            root = parse_xml(part.blob)
        except etree.XMLSyntaxError as exc:
            if "amplification" in str(exc):
                raise _unreadable(exc) from None
            return
        title = [_drawing_text(t) for t in root.iterfind(f"{C}chart/{C}title")]
        self.outline.add(f"Chart: {title[0]}" if title and title[0] else "Chart", "paragraph")
        for row in _chart_rows(root):
            self.outline.add(" | ".join(row), "table")

    def note(self, reference: Any) -> None:
        """The note ``reference`` points to, unless read already; references in it are not
        followed (Word puts none there, and a chain of them would only recurse)."""
        note = self.notes.pop((_NOTE_OF[reference.tag], reference.get(W_ID, "")), None)
        if note is not None:
            notes, self.notes = self.notes, {}
            try:
                self.body(note, headings=False)
            finally:
                self.notes = notes

    def alt_chunk(self, element: Any) -> None:
        from knowledge.parsers import html, text

        part = self.document.part.related_parts.get(element.get(R_ID))
        if part is None or part.content_type not in (*_HTML, "text/plain"):
            return  # MHT, RTF or a DOCX imported into the document: not read
        module = html if part.content_type in _HTML else text
        for block in module.parse(part.blob, self.limits):
            self.outline.add(block.text, block.kind, under=block.heading_path)

    def table(self, tbl: Any) -> None:
        """One ``a | b | c`` block a row; the notes its cells reference and the tables in them
        follow the row they are in."""
        from docx.table import Table

        table = Table(tbl, self.document)
        for tr in _children(tbl, TR):
            nested: list[Any] = []
            references: list[Any] = []
            cells: list[str] = []
            for tc in _row_cells(tr, table):
                if tc not in self._cells:
                    texts: list[str] = []
                    self.cell(tc, texts, nested, references)
                    self._cells[tc] = " ".join(" ".join(texts).split())
                cells.append(self._cells[tc])
            deduped = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
            if any(deduped):
                self.outline.add(" | ".join(deduped), "table")
            for reference in references:
                self.follow(reference)
            for inner in nested:
                self.table(inner)

    def cell(
        self, container: Any, texts: list[str], tables: list[Any], references: list[Any]
    ) -> None:
        """A cell's paragraphs' text, in any order and wrapping, the tables in it and its note
        references and charts."""
        for child in _content(container):
            if child.tag == P:
                anchored: list[Any] = []
                texts.append(_inline(child, anchored))
                for element in anchored:
                    if element.tag == TEXT_BOX:
                        self.cell(element, texts, tables, references)
                    else:
                        references.append(element)
            elif child.tag == TBL:
                tables.append(child)
            else:
                self.cell(child, texts, tables, references)


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


def _drawing_text(element: Any) -> str:
    """The text of DrawingML paragraphs (a chart's or an axis's title), one line."""
    lines = ("".join(t.text or "" for t in p.iter(f"{A}t")) for p in element.iter(f"{A}p"))
    return " ".join(" ".join(lines).split())


def _chart_rows(root: Any) -> list[list[str]]:
    """A chart's data: ``[axis, series...]``, then ``[category, value...]`` per category (point
    index), from the caches of its series in every plot; an XY chart's x values stand for
    categories. Empty when no series has a value."""
    names: list[str] = []
    columns: list[dict[int, str]] = []
    categories: dict[int, str] = {}
    for number, series in enumerate(root.iter(f"{C}ser"), start=1):
        if number > _CHART_SERIES:
            break
        name = series.find(f"{C}tx")  # a cached reference's text, or a literal
        names.append("" if name is None else _points(name).get(0) or name.findtext(f"{C}v", ""))
        values = series.find(f"{C}val")
        if values is None:
            values = series.find(f"{C}yVal")
        columns.append(_points(values) if values is not None else {})
        labels = series.find(f"{C}cat")
        if labels is None:
            labels = series.find(f"{C}xVal")
        if labels is not None:
            for index, label in _points(labels).items():
                categories.setdefault(index, label)
    names = [name or f"Series {n}" for n, name in enumerate(names, start=1)]
    indexes = sorted({index for column in columns for index in column})[:_CHART_ROWS]
    if not indexes:
        return []
    axis = next(
        (_drawing_text(t) for t in root.iterfind(f"{C}chart/{C}plotArea/{C}catAx/{C}title")), ""
    )
    rows = [[axis or "Category", *names]]
    for index in indexes:
        label = categories.get(index, str(index + 1))
        rows.append([label, *(_number(column.get(index, "")) for column in columns)])
    return rows


def _points(element: Any) -> dict[int, str]:
    """Point index → its cached text (levels of a multi-level category joined by " / ")."""
    points: dict[int, list[str]] = {}
    for point in element.iter(f"{C}pt"):
        value = point.find(f"{C}v")
        try:
            index = int(point.get("idx", ""))
        except ValueError:
            continue
        if value is not None and value.text and index >= 0:
            points.setdefault(index, []).append(" ".join(value.text.split()))
    return {index: " / ".join(reversed(levels)) for index, levels in points.items()}


def _number(text: str) -> str:
    """A cached number as people write it (Word stores 4.4 as 4.4000000000000004)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return format(value, ".15g") if value == value and abs(value) != float("inf") else text

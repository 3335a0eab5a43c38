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
from itertools import pairwise
from typing import Any

from knowledge.parsers import Block, Limits, ParseError
from knowledge.parsers.bidi import has_rtl, logical, rtl_share

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


# pdfminer's layout analysis (LAParams): characters → lines → text boxes (a paragraph of one
# column), text in form XObjects too (``all_texts``). Not pdfminer's ordering of the boxes
# (``boxes_flow``): it compares every box with every other, 31 s of CPU for a page of rotated
# table cells (0.4 s before); :func:`_reading_order` orders them instead.
LAYOUT = {"all_texts": True, "boxes_flow": None}
# A page with more boxes than this (single characters of rotated text, say) keeps them in
# pdfminer's top-to-bottom order.
MAX_ORDERED_BOXES = 2000
# A page's top and bottom edge, where running headers and footers stand: a tenth of its height.
EDGE = 0.1
_NUMBERS = re.compile(r"\d+")
# A page number once its numbers are "#": "#", "page #", "page # of #", "- # -", "#/#".
_PAGE_NUMBER = re.compile(r"[\W_]*(?:page|p\.)?[\W_]*#(?:[\W_]*(?:of|/)?[\W_]*#)?[\W_]*")
# A line that ends in a hyphen after a letter, the next beginning with a lowercase letter: a word
# broken at the line's end, by hyphenation ("ef-" / "fects") or at its own hyphen ("self-" /
# "publishing"). Marked (_BREAK) and decided once the whole document is read (_mend): never a
# word and a dangling hyphen ("self- publishing").
_BROKEN_WORD = re.compile(r"(?<=(\w))-[ \t]*\n\s*(?=(\w))")
# The mark of such a break: a soft hyphen, which is what it is (were one left, normalize_text
# drops it: the word joined).
_BREAK = "\u00ad"
_MARKED = re.compile(r"(\w+)\u00ad(\w+)")
_LETTERS = re.compile(r"[^\W\d_]+")
_HYPHENATED = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")
# Prefixes written with a hyphen, kept when the document has no word to say otherwise.
_HYPHEN_PREFIXES = frozenset(
    {"self", "well", "half", "cross", "non", "semi", "multi", "quasi", "anti", "pseudo"}
)


def _rejoin(match: re.Match[str]) -> str:
    before, after = match.group(1), match.group(2)
    return _BREAK if before.isalpha() and after.islower() else match.group(0)


def _mend(blocks: list[Block]) -> None:
    """The words broken at a line's end (:data:`_BREAK`), whole: joined if the document has
    the word unbroken more often than with a hyphen ("effects"), or if a part is no word of
    its own there or shorter than three letters ("ef-" / "fects": hyphenation); with their
    hyphen if the document writes them so, or both parts are words of its own ("mixed-mode"),
    or the first is a prefix written with one ("self-service")."""
    if not any(_BREAK in block.text for block in blocks):
        return
    words: dict[str, int] = {}
    hyphenated: dict[str, int] = {}
    for block in blocks:
        text = _MARKED.sub(" ", block.text).lower()
        for word in _LETTERS.findall(text):
            words[word] = words.get(word, 0) + 1
        for word in _HYPHENATED.findall(text):
            hyphenated[word] = hyphenated.get(word, 0) + 1

    def mended(match: re.Match[str]) -> str:
        before, after = match.group(1), match.group(2)
        first, second = before.lower(), after.lower()
        joined = words.get(first + second, 0)
        if hyphenated.get(f"{first}-{second}", 0) > joined:
            return f"{before}-{after}"
        if joined:
            return before + after
        if first in _HYPHEN_PREFIXES or (
            min(len(first), len(second)) >= 3 and first in words and second in words
        ):
            return f"{before}-{after}"
        return before + after

    for block in blocks:
        if _BREAK in block.text:
            block.text = _MARKED.sub(mended, block.text)


# The Latin typesetting ligatures (U+FB00-FB06) a PDF's fonts draw "fi", "fl", "ffi" ... with:
# as letters, so that "conﬁguration" is found by "configuration" (full text search and the
# embedding model saw another word). Only these: normalize_text keeps every other compatibility
# character as the reader sees it (m², full-width letters).
_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
     "\ufb05": "st", "\ufb06": "st"}
)  # fmt: skip


def _box_text(text: str) -> str:
    """A text box's lines as one paragraph: words broken at a line's end joined again, the
    typesetting ligatures as their letters."""
    return " ".join(_BROKEN_WORD.sub(_rejoin, text.translate(_LIGATURES)).split())


def _visible(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


Box = dict[str, Any]  # pdfplumber's text box: x0, x1, top, bottom, text


def _cut(boxes: list[Box], low: str, high: str) -> list[list[Box]]:
    """``boxes`` split where no box crosses a line across the axis its ``low``..``high`` edges
    lie on, in that axis's order."""
    groups: list[list[Box]] = []
    reach = -1.0
    for box in sorted(boxes, key=lambda b: b[low]):
        if not groups or box[low] > reach:
            groups.append([])
        groups[-1].append(box)
        reach = max(reach, box[high]) if len(groups[-1]) > 1 else box[high]
    return groups


def _columns(boxes: list[Box]) -> list[list[Box]]:
    """``boxes`` split where no box crosses a vertical line (a gutter), left to right."""
    return _cut(boxes, "x0", "x1")


def _bands(boxes: list[Box]) -> list[list[Box]]:
    """``boxes`` split where no box crosses a horizontal line, top to bottom."""
    return _cut(boxes, "top", "bottom")


def _reading_order(boxes: list[Box], rtl: bool = False) -> list[Box]:
    """A page's text boxes as they are read (XY-cut): columns left to right (right to left on
    a page of right-to-left text), each top to bottom; where something crosses the columns (a
    title, a figure across the page), the bands above and below it in turn. Consecutive bands
    that share a gutter are one region, so that two columns whose paragraphs happen to end at
    the same height are still read column after column, not paragraph row by row."""
    if len(boxes) <= 1:
        return boxes
    columns = _columns(boxes)
    if len(columns) > 1:
        return [
            box for column in columns[:: -1 if rtl else 1] for box in _reading_order(column, rtl)
        ]
    regions: list[list[Box]] = []
    for band in _bands(boxes):
        if regions and len(_columns(regions[-1] + band)) > 1:
            regions[-1] += band
        else:
            regions.append(band)
    if len(regions) == 1:  # neither cut applies
        return sorted(boxes, key=lambda b: (b["top"], -b["x1"] if rtl else b["x0"]))
    return [box for region in regions for box in _reading_order(region, rtl)]


def _lines_logical(text: str) -> str:
    """Text whose lines pdfplumber put together left to right (a table cell, a page read
    line by line), each line in logical order (:func:`knowledge.parsers.bidi.logical`)."""
    if not has_rtl(text):
        return text
    return "\n".join(logical(line) for line in text.split("\n"))


def _layout_lines(page: Any) -> list[Any]:
    """pdfminer's horizontal text lines of the page's text boxes (in forms too)."""
    from pdfminer.layout import LTContainer, LTTextLineHorizontal

    found: list[Any] = []
    pending = list(page.layout)
    while pending:
        obj = pending.pop()
        if isinstance(obj, LTTextLineHorizontal):
            found.append(obj)
        elif isinstance(obj, LTContainer):
            pending.extend(obj)
    return found


def _rows(lines: list[Any]) -> list[list[Any]]:
    """``lines`` that stand side by side at one height with no more than a line's height
    between them, as one row each: pdfminer breaks a line wherever the drawing jumps, and a
    producer draws mixed right-to-left text a run at a time, in logical order (the start of an
    Arabic line, then the Latin word in it, then the rest of the line to its left)."""
    rows: list[tuple[list[Any], list[float]]] = []  # lines, [x1, y0, y1] of the row
    for line in sorted(lines, key=lambda line: line.x0):
        height = line.y1 - line.y0
        for members, extent in rows:
            x1, y0, y1 = extent
            overlap = min(y1, line.y1) - max(y0, line.y0)
            if overlap > 0.5 * min(height, y1 - y0) and line.x0 - x1 < max(height, y1 - y0):
                members.append(line)
                extent[0] = max(x1, line.x1)
                break
        else:
            rows.append(([line], [line.x1, line.y0, line.y1]))
    return [members for members, _extent in rows]


def _level(char: Any) -> bool:
    """A glyph set upright, its baseline left to right (not rotated, not upside down: a page
    turned 180° stands right to left)."""
    a, b, c, d = char.matrix[:4]
    return a > 0 and d > 0 and abs(b) <= 0.2 * a and abs(c) <= 0.5 * d


def _rtl_boxes(page: Any) -> list[Box]:
    """The page's text boxes made again from its characters by their position, with each line
    in logical order (:func:`knowledge.parsers.bidi.logical`): for a page with right-to-left
    text, whose lines pdfminer's drawing-order analysis breaks into pieces."""
    from pdfminer.layout import LAParams, LTChar, LTTextLineHorizontal

    params = LAParams(all_texts=True, boxes_flow=None)  # LAYOUT's
    lines = []
    for row in _rows(_layout_lines(page)):
        chars = [c for part in row for c in part if isinstance(c, LTChar)]
        if not all(map(_level, chars)):
            # rotated or skewed text: where a glyph stands says nothing of the order
            lines += row
            continue
        line = LTTextLineHorizontal(params.word_margin)
        for char in sorted(chars, key=lambda c: c.x0):
            line.add(char)
        line.analyze(params)
        lines.append(line)
    boxes = []
    for layout_box in page.layout.group_textlines(params, lines):
        layout_box.analyze(params)
        box = page.process_object(layout_box)
        # a glyph at a time: a ligature's letters (lam-alef) are in logical order already
        box["text"] = "\n".join(
            (
                logical([glyph.get_text() for glyph in line if glyph.get_text() != "\n"])
                if all(_level(c) for c in line if isinstance(c, LTChar))
                else line.get_text().rstrip("\n")
            )
            for line in layout_box
        )
        boxes.append(box)
    return boxes


# A gap between two letters of a line is a word gap when it is wider than the line's typical
# gap between letters by this share of the font size. Some PDFs (TeX output especially) draw no
# space character: words are apart only by where their letters stand (a fifth of an em and more
# in pdfjs-tests/tracemonkey.pdf; a justified line's spaces shrink to about that), and
# pdfplumber's fixed 3 pt tolerance read "Theinnertree". Not pdfminer's tenth (its LAParams
# word_margin): a diagram's letters placed by another font's widths stand up to 0.14 em apart
# inside words (pypdf-resources/GeoBase_NHNC1_Data_Model_UML_EN.pdf: "Netw ork", "T eam").
# Measured from the line's typical gap, letter-spaced headings stay words.
WORD_GAP = 0.15
# A line with fewer gaps than this has no typical gap of its own: its letters' gaps count from 0.
TYPICAL_GAPS = 4
# pdfplumber's tolerance (pt) within which characters stand on one line (its y_tolerance).
LINE_TOLERANCE = 3
Char = dict[str, Any]  # pdfplumber's character: text, x0, x1, top, size, upright ...


def _spaced(chars: list[Char]) -> list[Char]:
    """``chars`` (pdfplumber's) with a space character put in each word gap of their lines
    (:data:`WORD_GAP`), right after the gap's first letter, so that pdfplumber's text of them
    has the words apart. Only upright text; gaps next to a space character drawn are left."""
    from pdfplumber.utils import cluster_objects

    after: dict[int, Char] = {}  # by the letter the space follows
    upright = [char for char in chars if char.get("upright")]
    for line in cluster_objects(upright, "top", LINE_TOLERANCE):
        for stretch in (part for row in _rows_of(line) for part in _stretches(row)):
            for a, b in _word_gaps(stretch):
                after[id(a)] = {**a, "text": " ", "x0": a["x1"], "x1": b["x0"]}
    if not after:
        return chars
    spaced = []
    for char in chars:
        spaced.append(char)
        if id(char) in after:
            spaced.append(after[id(char)])
    return spaced


def _rows_of(line: list[Char]) -> list[list[Char]]:
    """The characters of one of pdfplumber's lines, left to right, in rows of those that stand
    at one height (each overlaps the row's last by half its height): pdfplumber's lines chain
    heights 3 pt apart, so the lines of a table's header cells interleave in one of its lines."""
    rows: list[list[Char]] = []
    for char in sorted(line, key=lambda char: char["x0"]):
        best, most = None, 0.0
        for row in rows:
            last = row[-1]
            overlap = min(last["bottom"], char["bottom"]) - max(last["top"], char["top"])
            height = min(last["bottom"] - last["top"], char["bottom"] - char["top"])
            if overlap > 0.5 * height and overlap > most:
                best, most = row, overlap
        if best is None:
            rows.append([char])
        else:
            best.append(char)
    return rows


def _stretches(line: list[Char]) -> list[list[Char]]:
    """A line's characters (left to right) in stretches apart by more than an em (table cells,
    columns, tab stops), each with its own typical gap between letters."""
    stretches = [line[:1]]
    for a, b in pairwise(line):
        if b["x0"] - a["x1"] > max(a["size"], b["size"]):
            stretches.append([])
        stretches[-1].append(b)
    return stretches


def _word_gaps(stretch: list[Char]) -> list[tuple[Char, Char]]:
    """The pairs of neighbouring letters of ``stretch`` that a word gap parts
    (:data:`WORD_GAP`)."""
    from statistics import median

    pairs = [
        (a, b) for a, b in pairwise(stretch) if not a["text"].isspace() and not b["text"].isspace()
    ]
    gaps = [b["x0"] - a["x1"] for a, b in pairs]
    # a letter drawn twice, a little apart (a bold face faked) overlaps: no gap below 0
    typical = max(0.0, median(gaps)) if len(gaps) >= TYPICAL_GAPS else 0.0
    return [
        (a, b)
        for (a, b), gap in zip(pairs, gaps, strict=True)
        if gap > 0 and gap > typical + WORD_GAP * max(a["size"], b["size"])
    ]


def _spaced_text(page: Any) -> str:
    """The page's text read line by line across the page (pdfplumber's ``extract_text``), its
    words apart where the letters' positions say so (:func:`_spaced`)."""
    from pdfplumber.utils import chars_to_textmap

    chars = _spaced(page.chars)
    if not chars:
        return ""
    textmap = chars_to_textmap(
        chars, layout_bbox=page.bbox, layout_width=page.width, layout_height=page.height
    )
    return str(textmap.as_string)


def _table_rows(page: Any, tables: list[Any]) -> list[list[str | None]]:
    """The tables' rows as pdfplumber's ``Table.extract`` reads them (a cell holds the
    characters whose middle is in it), each cell's words apart where the letters' positions say
    so (:func:`_spaced`)."""
    from pdfplumber.utils import extract_text

    if not tables:
        return []
    chars = _spaced(page.chars)

    def within(char: Char, box: tuple[float, float, float, float]) -> bool:
        x, y = (char["x0"] + char["x1"]) / 2, (char["top"] + char["bottom"]) / 2
        return bool(box[0] <= x < box[2] and box[1] <= y < box[3])

    rows: list[list[str | None]] = []
    for table in tables:
        for row in table.rows:
            in_row = [char for char in chars if within(char, row.bbox)]
            rows.append(
                [
                    None if cell is None else extract_text([c for c in in_row if within(c, cell)])
                    for cell in row.cells
                ]
            )
    return rows


Content = tuple[list[str], list[list[str | None]], list[bool]]


def _page_content(page: Any) -> Content:
    """The page's paragraphs outside its ruled tables, in reading order, the tables' rows, and
    for each paragraph whether it stands at the page's top or bottom edge (a running header or
    footer may).

    Paragraphs are pdfminer's text boxes: the lines of one column, read column after column.
    Before, the page's text was read line by line across the whole width, so the lines of a
    two-column page alternated between its columns ("... is clamped the most common ranges in
    size ... to the supporting structure ..."), and a page was one paragraph. A page whose
    boxes do not hold all its characters (pdfminer leaves some text out of its analysis) is
    read as before, so that no text is lost."""
    # Ruled tables need lines or rectangles; pages without them skip the search.
    tables = page.find_tables() if (page.lines or page.rects) else []
    table_boxes = [t.bbox for t in tables]
    outside = page.filter(_outside(table_boxes)) if table_boxes else page
    rows = _table_rows(page, tables)
    rows = [[_lines_logical(cell) if cell else cell for cell in row] for row in rows]
    keep = _outside(table_boxes)
    boxes = page.objects.get("textboxhorizontal", [])
    if any(has_rtl(box.get("text", "")) for box in boxes):
        if len(boxes) <= MAX_ORDERED_BOXES:
            boxes = _rtl_boxes(page)
        else:  # too many to regroup: each line of pdfminer's in logical order at least
            boxes = [{**box, "text": _lines_logical(box.get("text", ""))} for box in boxes]
    boxes = [box for box in boxes if keep(box)]
    rtl, ltr = rtl_share("".join(box.get("text", "") for box in boxes))
    if len(boxes) <= MAX_ORDERED_BOXES:
        boxes = _reading_order(boxes, rtl=rtl > ltr)
    paragraphs = [_box_text(box.get("text", "")) for box in boxes]
    # counted with the ligatures as their letters on both sides, as the paragraphs have them
    on_page = "".join(c["text"] for c in outside.chars).translate(_LIGATURES)
    if sum(map(_visible, paragraphs)) == _visible(on_page):
        band = EDGE * float(page.height)
        top, bottom = float(page.bbox[1]) + band, float(page.bbox[3]) - band
        edges = [box["top"] < top or box["bottom"] > bottom for box in boxes]
        kept = [(p, edge) for p, edge in zip(paragraphs, edges, strict=True) if p]
        return [p for p, _edge in kept], rows, [edge for _p, edge in kept]
    text = _lines_logical(_spaced_text(outside).translate(_LIGATURES))
    text = _BROKEN_WORD.sub(_rejoin, text)
    paragraphs = [" ".join(p.split()) for p in _PARAGRAPHS.split(text) if p.strip()]
    return paragraphs, rows, [False] * len(paragraphs)


def _running(blocks: list[Block], edges: list[tuple[int, str]], pages: int) -> set[int]:
    """The blocks (indices) that are a running header or footer: text at a page's edge (its
    numbers aside) on at least half the pages, three at least; all but its first, and every
    one that is only a page number ("12", "Page 3 of 18", "- 4 -")."""
    on_pages: dict[str, set[int]] = {}
    for index, key in edges:
        on_pages.setdefault(key, set()).add(blocks[index].page or 0)
    running = {key for key, where in on_pages.items() if len(where) >= max(3, (pages + 1) // 2)}
    dropped: set[int] = set()
    seen: set[str] = set()
    for index, key in edges:
        if key not in running:
            continue
        if key in seen or (len(key) <= 40 and _PAGE_NUMBER.fullmatch(key)):
            dropped.add(index)
        seen.add(key)
    return dropped


def _read_page(page: Any) -> Content:
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
        pdf = pdfplumber.open(io.BytesIO(data), laparams=LAYOUT)
    except Exception as exc:  # pdfminer raises many unrelated types for broken files
        if is_encryption(exc):
            raise ParseError("encrypted_pdf", "The PDF is encrypted.") from None
        raise ParseError("corrupt_file", UNREADABLE, type(exc).__name__) from None
    blocks: list[Block] = []
    edges: list[tuple[int, str]] = []  # paragraphs at a page's edge: index, text without numbers
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
                paragraphs, rows, at_edge = _read_page(page)
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
            for paragraph, edge in zip(paragraphs, at_edge, strict=True):
                if edge:
                    edges.append((len(blocks), _NUMBERS.sub("#", paragraph.casefold())))
                blocks.append(Block(paragraph, "paragraph", number))
            for row in rows:
                cells = [" ".join((cell or "").translate(_LIGATURES).split()) for cell in row]
                if any(cells):
                    blocks.append(Block(" | ".join(cells), "table", number))
        dropped = _running(blocks, edges, len(pages))
    blocks = [block for index, block in enumerate(blocks) if index not in dropped]
    if not any(b.text.strip() for b in blocks):
        raise ParseError("no_text", "The PDF has no extractable text (a scan without OCR?).")
    _mend(blocks)
    return blocks

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knowledge.parsers import DOCX, HTML, JSON, MARKDOWN, PDF, TEXT, Limits, ParseError, parse
from knowledge.parsers.detect import detect, detect_declared
from knowledge.parsers.sandbox import parse_isolated
from knowledge.parsers.text import as_utf8, codec, decode
from knowledge.tests.fixtures import (
    add_chart_part,
    add_notes_part,
    as_macro_enabled,
    as_strict,
    billion_laughs,
    chart_drawing,
    deep_json,
    make_docx,
    make_docx_body,
    make_docx_laughs,
    make_encrypted_pdf,
    make_package_without_relationships,
    make_pdf,
    make_pdf_columns,
    make_pdf_flate_bomb,
    make_pdf_icc_without_components,
    make_pdf_pages,
    make_pdf_runs,
    make_pdf_typeset,
    make_zip_bomb,
    rewrite_parts,
    save_docx,
    typeset,
)

LIMITS = Limits()


def texts(blocks) -> list[str]:
    return [b.text for b in blocks]


def test_markdown_keeps_heading_paths_and_code_blocks_whole():
    source = (
        b"# Guide\n\nIntro text.\n\n## Install\n\nRun it:\n\n```sh\npip install x\n\nmake run\n```\n\n"
        b"Setext\n------\n\n- one\n- two\n"
    )
    blocks = parse(MARKDOWN, source, LIMITS)
    assert [(b.kind, b.heading_path) for b in blocks] == [
        ("paragraph", ["Guide"]),
        ("paragraph", ["Guide", "Install"]),
        ("code", ["Guide", "Install"]),
        ("list", ["Guide", "Setext"]),
    ]
    assert blocks[2].text == "```sh\npip install x\n\nmake run\n```"


def test_markdown_of_headings_only_is_indexed_as_its_headings():
    blocks = parse(MARKDOWN, b"# Annual report 2020\n\n## Revenue grew by twelve percent\n", LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Annual report 2020", []),
        ("heading", "Revenue grew by twelve percent", ["Annual report 2020"]),
    ]


def test_a_heading_with_text_under_it_stays_a_heading_path_only():
    source = b"# Guide\n\n## Empty section\n\n## Install\n\nRun it.\n\n## See also\n"
    blocks = parse(MARKDOWN, source, LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Empty section", ["Guide"]),
        ("paragraph", "Run it.", ["Guide", "Install"]),
        ("heading", "See also", ["Guide"]),
    ]


def test_json_records_become_field_path_lines():
    data = json.dumps({"items": [{"title": "A", "price": {"eur": 3}, "tags": ["x", "y"]},
                                 {"title": "B", "price": {"eur": 5}}]}).encode()  # fmt: skip
    blocks = parse(JSON, data, LIMITS)
    assert texts(blocks) == ["title: A\nprice.eur: 3\ntags: x, y", "title: B\nprice.eur: 5"]
    assert blocks[0].heading_path == ["A"]


def test_large_numeric_arrays_are_summarised_small_ones_kept():
    ring = [[round(-65.6 + i / 1000, 3), round(43.4 + i / 1000, 3)] for i in range(5000)]
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "Canada", "codes": [1, 2, 3]},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}  # fmt: skip
    blocks = parse(JSON, json.dumps(geojson).encode(), LIMITS)
    assert texts(blocks) == [
        "type: Feature\nproperties.name: Canada\nproperties.codes: 1, 2, 3\n"
        "geometry.type: Polygon\ngeometry.coordinates: 10,000 numbers, the first "
        "-65.6, 43.4, -65.599, 43.401, -65.598, 43.402, -65.597, 43.403, ..."
    ]
    # Mixed arrays, and numbers with anything else among them, are kept line by line.
    mixed = parse(JSON, json.dumps({"v": [[1, "a"]] * 100}).encode(), LIMITS)
    assert texts(mixed)[0].count("\n") == 99
    booleans = parse(JSON, json.dumps({"flags": [True] * 100}).encode(), LIMITS)
    assert texts(booleans) == ["flags: " + ", ".join(["True"] * 100)]


def test_json_lines_are_records_too():
    blocks = parse(JSON, b'{"q": "one"}\n{"q": "two"}\n', LIMITS)
    assert texts(blocks) == ["q: one", "q: two"]


@pytest.mark.parametrize(
    ("data", "code"),
    [(deep_json(), "json_too_deep"), (b"{nope", "invalid_json"), (b"[]", "no_text")],
)
def test_bad_json_fails_with_a_specific_code(data, code):
    with pytest.raises(ParseError) as excinfo:
        parse(JSON, data, LIMITS)
    assert excinfo.value.code == code


def test_html_main_content_without_navigation_scripts_or_footer():
    page = b"""<!doctype html><html><head><title>T</title><script>var x = 'script';</script></head>
    <body><nav>Home | About</nav><header>Site header</header>
    <main><h1>Refunds</h1><p>Refunds take <b>five</b> days.</p>
    <table><tr><th>Plan</th><th>Days</th></tr><tr><td>Pro</td><td>2</td></tr></table></main>
    <footer>Copyright</footer></body></html>"""
    blocks = parse(HTML, page, LIMITS)
    assert texts(blocks) == ["Refunds take five days.", "Plan | Days", "Pro | 2"]
    assert all(b.heading_path == ["Refunds"] for b in blocks)


def test_html_of_a_heading_only_is_indexed_as_that_heading():
    page = "<h3>Jahresabschluss zum Geschäftsjahr 2020</h3>".encode()
    blocks = parse(HTML, page, LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("heading", "Jahresabschluss zum Geschäftsjahr 2020")
    ]
    titled = b"<html><head><title>Report</title></head><body><h1>Q1</h1><h2>Q2</h2></body></html>"
    assert [(b.text, b.heading_path) for b in parse(HTML, titled, LIMITS)] == [
        ("Q1", ["Report"]),
        ("Q2", ["Q1"]),
    ]


def test_text_is_kept_in_nfc_without_invisible_characters_but_with_its_joiners():
    hebrew = "\u05d4\u05e1\u05e4\u05e8\u05d9\u05d9\u05d4"
    text = (
        f"\ufeffpass\u200bword soft\u00adhyphen word\u2060joiner \u202b{hebrew}\u200f\u202c "
        "\u2067isolated\u2069 Cafe\u0301 \u200eleft. Kept: m\u00b2, \ufb01le, "
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \U0001f468\u200d\U0001f469"
    )
    (block,) = parse(TEXT, text.encode(), LIMITS)
    assert block.text == (
        f"password softhyphen wordjoiner {hebrew} isolated Caf\u00e9 left. Kept: m\u00b2, \ufb01le, "
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \U0001f468\u200d\U0001f469"
    )


def test_text_in_other_encodings_and_with_nul_bytes_does_not_crash():
    latin1 = "Prix: 10 €, déjà payé.\n\nFin.".encode("cp1252")
    assert texts(parse(TEXT, latin1, LIMITS))[0].startswith("Prix: 10")
    broken = b"valid \xff\xfe\x00 bytes\x00\n\nnext"
    assert texts(parse(TEXT, broken, LIMITS)) == ["valid \ufffd\ufffd bytes", "next"]


@pytest.mark.parametrize(
    "head",
    [
        '<meta charset="{}">',
        "<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset={}'>",
    ],
)
@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("koi8-r", "Оплата по счёту."),
        ("euc-jp", "請求書は月末に届きます。"),
        ("cp1252", "Café crème brûlée"),
    ],
)
def test_a_page_is_read_in_the_encoding_its_meta_tag_names(head, encoding, text):
    """Short texts in other encodings, which charset-normalizer guesses wrong without the tag
    (KOI8-R as Shift_JIS, EUC-JP as Korean, Windows-1252 as Windows-1250); it reads the tag."""
    page = f"<html><head>{head.format(encoding)}</head><body><p>{text}</p></body></html>"
    assert texts(parse(HTML, page.encode(encoding), LIMITS)) == [text]


def test_only_text_encodings_python_knows_are_taken_from_a_server():
    names = ("KOI8-R", '"windows-1251"', "utf8", "UTF-16LE")
    assert [codec(n) for n in names] == ["koi8-r", "cp1251", "utf-8", "utf-16-le"]
    assert [codec(n) for n in ("base64", "rot13", "no-such-codec", "", None)] == [None] * 5
    assert codec(b"windows-1251") == "cp1251"  # an upload's part, as Django's parser gives it


SHORT_TEXTS = [
    ("windows-1251", "Привет, мир"),  # guessed as a box-drawing code page
    ("koi8-r", "Оплата по счёту в течение 14 дней."),  # guessed as Shift_JIS
    ("iso-8859-1", "Café crème brûlée à volonté."),  # guessed as Windows-1250: "crčme"
    ("shift_jis", "請求書は月末に届きます。"),
    ("utf-16-le", "Привет, мир"),  # no byte order mark
]


@pytest.mark.parametrize(("charset", "text"), SHORT_TEXTS)
def test_text_in_the_charset_it_is_declared_in_is_read_as_that(charset, text):
    assert as_utf8(text.encode(charset), charset.upper()) == text.encode("utf-8")
    assert decode(as_utf8(text.encode(charset), charset)) == text


def test_a_declared_charset_that_does_not_fit_leaves_the_text_to_utf8_or_the_guess():
    russian = "Привет, мир".encode("cp1251")
    assert as_utf8("Привет, мир".encode(), "windows-1251") == "Привет, мир".encode()  # UTF-8 first
    assert as_utf8(russian, "us-ascii") is russian  # a lying label: guessed, not replaced
    assert as_utf8(russian, "utf-8") is russian
    assert as_utf8(russian, "x-no-such-charset") is russian
    assert as_utf8(russian, "base64") is russian
    with_bom = b"\xef\xbb\xbf" + "Привет".encode()
    assert as_utf8(with_bom, "koi8-r") is with_bom


def test_only_text_is_re_encoded_from_a_declared_charset():
    pdf = make_pdf(["Revenue grew."])
    assert detect_declared(pdf, "report.pdf", "windows-1251") == (PDF, pdf)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    assert detect_declared(png, "image.png", "windows-1251") == (None, png)
    text = "\n\n".join(["# Заголовок", "Широкий текст."])
    wide = text.encode("utf-16-le")
    assert detect(wide, "notes.md") is None  # NUL bytes: not text until decoded
    assert detect_declared(wide, "notes.md", "utf-16le") == (MARKDOWN, text.encode())
    koi8 = "Оплата по счёту.".encode("koi8-r")
    assert detect_declared(koi8, "note.txt", "koi8-r") == (TEXT, "Оплата по счёту.".encode())
    assert detect_declared(koi8, "note.txt", None) == (TEXT, koi8)


def test_pdf_keeps_page_numbers():
    blocks = parse(PDF, make_pdf(["First page text.", "Second page text."]), LIMITS)
    assert [(b.page, b.text) for b in blocks] == [(1, "First page text."), (2, "Second page text.")]


def test_pdf_tables_become_rows_and_are_not_read_twice():
    from knowledge.tests.fixtures import table_stream

    data = make_pdf(["Prices"], raw=[table_stream([["Plan", "Price"], ["Pro", "20"]])])
    blocks = parse(PDF, data, LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "Prices"),
        ("table", "Plan | Price"),
        ("table", "Pro | 20"),
    ]


def test_a_two_column_pdf_is_read_column_after_column_with_its_broken_words_whole():
    """pdfplumber's text was read across the page, so a two-column page's lines alternated
    between the columns (chunks of half sentences from two topics), the page was one paragraph,
    and a word broken at a line's end kept a space ("self- service")."""
    left = [
        "Refunds are paid to the original",
        "card within five business days.",
        "Cancelled orders are refunded by",
        "the same self-",
        "service portal.",
    ]
    right = ["Parcels to the islands travel by", "sea freight and take two weeks.",
             "Express delivery is not offered", "for bulky items such as sofas", "or wardrobes."]  # fmt: skip
    blocks = parse(PDF, make_pdf_columns(left, right, title="Customer guide"), LIMITS)
    texts = [b.text for b in blocks]
    assert texts == [
        "Customer guide",
        "Refunds are paid to the original card within five business days. Cancelled orders "
        "are refunded by the same self-service portal.",
        "Parcels to the islands travel by sea freight and take two weeks. Express delivery is "
        "not offered for bulky items such as sofas or wardrobes.",
    ]
    assert {(b.kind, b.page) for b in blocks} == {("paragraph", 1)}


def test_two_pdf_columns_whose_paragraphs_end_at_the_same_height_are_still_read_in_columns():
    """The page is cut into bands where no text crosses a horizontal line: bands that share the
    gutter are read as one region, column after column, not paragraph row by row."""
    left = [
        "Refunds are paid to the",
        "original card.",
        "",
        "Cancelled orders are",
        "refunded at once.",
    ]
    right = ["Parcels to the islands", "travel by sea.", "", "Express delivery is", "not offered there."]  # fmt: skip
    title = "Customer guide: refunds, cancelled orders, parcels and express delivery"  # across
    blocks = parse(PDF, make_pdf_columns(left, right, title=title), LIMITS)
    assert [b.text for b in blocks] == [
        title,
        "Refunds are paid to the original card.",
        "Cancelled orders are refunded at once.",
        "Parcels to the islands travel by sea.",
        "Express delivery is not offered there.",
    ]


def test_a_word_hyphenated_at_a_pdf_lines_end_is_whole_and_a_compound_keeps_its_hyphen():
    """Every word broken at a line's end kept the hyphen ("Ef-fects", "com-piler": a TeX
    paper, pdfjs-tests/tracemonkey.pdf, had hundreds). The document's own words decide: a
    word it also has unbroken is joined, a fragment that is no word of its own ("ef") too;
    two words of its own ("mixed", "mode") and the prefixes written with a hyphen ("self")
    keep it."""
    left = [
        "Side ef-",
        "fects are rare. The com-",
        "piler and the compiler",
        "team handle self-",
        "service and mixed-",
        "mode runs. Ef-",
        "fects show in mode",
        "and mixed tests.",
    ]
    blocks = parse(PDF, make_pdf_columns(left, [""] * len(left)), LIMITS)
    assert [b.text for b in blocks] == [
        "Side effects are rare. The compiler and the compiler team handle self-service and "
        "mixed-mode runs. Effects show in mode and mixed tests."
    ]


def test_a_pdf_line_ending_in_a_hyphen_before_a_capital_or_a_number_keeps_its_space():
    """Only a word broken at a line's end is joined: "COVID-" then "19" or "Jean-" then
    "Paul" may be a break too, but "see pages 10-" then "12" and a dash before a name are not
    ours to guess; they read as before, with a space."""
    left = ["Prices rose in 2023-", "Sales fell-", "Meet Anne-"]
    right = ["Stock is counted", "each Monday at", "nine in the morning."]
    blocks = parse(PDF, make_pdf_columns(left, right), LIMITS)
    assert [b.text for b in blocks] == [
        "Prices rose in 2023- Sales fell- Meet Anne-",
        "Stock is counted each Monday at nine in the morning.",
    ]


def test_a_pdfs_typesetting_ligatures_are_read_as_their_letters():
    """A font's "fi" ligature (StandardEncoding's code 0xAE) was stored as U+FB01: full text
    search for "configuration" did not find "conﬁguration"."""
    left = ["The con\xaeguration of the work\xafow", "is read at start."]  # 0xAF: "fl"
    blocks = parse(PDF, make_pdf_columns(left, ["", ""]), LIMITS)
    assert [b.text for b in blocks] == ["The configuration of the workflow is read at start."]


def _right_aligned(right: float, y: float, runs: list[str]) -> list[tuple[float, float, str]]:
    """``runs`` drawn one after the other from the right edge ``right`` leftwards (a glyph is
    6 pt wide): the first run drawn is the rightmost, as a word processor draws a right-to-left
    line a run of one direction at a time, in the order they were typed."""
    placed = []
    for run in runs:
        right -= 6 * len(run)
        placed.append((right, y, run))
    return placed


def test_a_right_to_left_pdf_reads_in_logical_order_however_its_runs_were_drawn():
    """A PDF gives a right-to-left line's characters as they stand, left to right: the text
    read "םילקש 20 אוה" for "הוא 20 שקלים", and a line drawn a run at a time (the Hebrew
    start, then the Latin word to its left, then the rest further left) was broken into pieces
    where the drawing jumped, each its own paragraph. Numbers and Latin words read left to
    right inside it, brackets turn the way they were typed."""
    # "The price of Python is 20 shekels / a month (VAT included)." as it stands on the page
    first = _right_aligned(400, 700, ["לש ריחמה", " Python ", "םילקש 20 אוה"])
    second = _right_aligned(400, 686, [".(מעמ ללוכ) שדוחל"])
    for runs in (first + second, second[::-1] + first[::-1]):  # in either drawing order
        blocks = parse(PDF, make_pdf_runs(runs), LIMITS)
        assert [b.text for b in blocks] == ["המחיר של Python הוא 20 שקלים לחודש (כולל מעמ)."]
    # the whole line drawn left to right in one run reads the same
    whole = [(400 - 6 * 28, 700, "םילקש 20 אוה Python לש ריחמה")]
    assert [b.text for b in parse(PDF, make_pdf_runs(whole), LIMITS)] == [
        "המחיר של Python הוא 20 שקלים"
    ]


def test_a_right_to_left_line_keeps_ligatures_whole_and_a_space_between_scripts():
    """A glyph's own letters (the lam-alef ligature "لإ") are in logical order already; a
    Latin word drawn touching an Arabic one lost the space drawn elsewhere ("Pythonمن");
    presentation forms (pdfjs-tests/ArabicCIDTrueType.pdf) were not found by their letters."""
    from knowledge.parsers.bidi import logical

    # the glyphs of "R و Python من الإنتاجية" as they stand, left to right
    glyphs = [*"ةيجاتن", "لإ", *"ا نمPython و R"]  # noqa: RUF001
    assert logical(glyphs) == "R و Python من الإنتاجية"
    assert logical("plain text, 2-5 (as is)") == "plain text, 2-5 (as is)"
    # a font's glyphs named by their presentation forms (the shapes in a word) read as letters
    assert logical("\ufe94\ufef4\ufe91\ufeae\ufecc\ufedf\u0627") == "العربية"


def test_right_to_left_pdf_columns_are_read_right_column_first():
    # a line of only Hebrew letters and a full stop stands as its characters reversed
    right = ["הטקסט הזה נקרא", "ראשון בעמוד."]
    left = ["והטקסט הזה", "נקרא אחריו."]
    runs = [
        (x - 6 * len(line), 700 - 14 * n, line[::-1])
        for x, lines in ((540, right), (260, left))
        for n, line in enumerate(lines)
    ]
    blocks = parse(PDF, make_pdf_runs(runs), LIMITS)
    assert [b.text for b in blocks] == [
        "הטקסט הזה נקרא ראשון בעמוד.",
        "והטקסט הזה נקרא אחריו.",
    ]


def test_a_two_column_pdf_with_ligatures_is_still_read_column_after_column():
    """The check that a page's text boxes hold all its characters counted "fi" as two
    characters in the boxes and its ligature "ﬁ" as one on the page: every page with a
    ligature (pdfjs-tests/tracemonkey.pdf, a TeX paper) was read line by line across both
    columns, its words run together ("andisusedfortheapplication")."""
    left = ["The con\xaeguration is read", "at start by the server."]  # 0xAE: "fi"
    right = ["Parcels to the islands", "travel by sea freight."]
    blocks = parse(PDF, make_pdf_columns(left, right), LIMITS)
    assert [b.text for b in blocks] == [
        "The configuration is read at start by the server.",
        "Parcels to the islands travel by sea freight.",
    ]


def test_a_pdfs_running_header_and_page_footer_are_not_repeated_on_every_page():
    """A header or footer printed on every page was a paragraph of every page ("Copyright
    Office Summary", "Page 3 of 18" in pdfminer-samples/dmca.pdf): in every page's chunks and
    citation snippets. A text at a page's top or bottom edge that recurs on at least half the
    pages (three at least), its numbers aside, is read once, where it first stands; a page
    number not at all. Body text that recurs stays."""
    body = ["Refunds are paid within five days.", "Parcels travel by sea.", "Stock is counted."]
    pages = [
        [
            (72, 760, "ACME Customer Handbook 2026"),
            (72, 600, text),
            (72, 500, "See the table below."),
            (280, 30, f"Page {n} of 3"),
        ]
        for n, text in enumerate(body, start=1)
    ]
    blocks = parse(PDF, make_pdf_pages(pages), LIMITS)
    assert [(b.page, b.text) for b in blocks] == [
        (1, "ACME Customer Handbook 2026"),
        (1, "Refunds are paid within five days."),
        (1, "See the table below."),
        (2, "Parcels travel by sea."),
        (2, "See the table below."),
        (3, "Stock is counted."),
        (3, "See the table below."),
    ]


def test_a_pdf_typeset_without_space_characters_reads_with_its_words_apart():
    """TeX draws no space character: its words are apart only by where they stand (a fifth of
    an em), and a page read line by line across (where rules drawn over the text, a figure's,
    make a table of it: pdfjs-tests/tracemonkey.pdf) or a table's cells read with pdfplumber's
    fixed 3 pt tolerance ran them together ("Theeffectofthisdrugonsleepwasmeasuredin"). A
    gap wider than the line's typical one by 0.15 of the font size parts words; kerning, a
    ligature, and a heading letter-spaced throughout do not."""
    body = [
        ["The", "effect", "of", "this", "drug", "on", "sleep", "was", "measured", "in"],
        ["forty", "adults", "over", "six", "weeks", "of", "treatment", "at", "two", "clinics."],
        ["Sleep", "was", "longer", "by", "half", "an", "hour", "on", "average."],
    ]
    lines = [(72.0, 700.0 - 12 * n, 9.0, typeset(words)) for n, words in enumerate(body)]
    heading = typeset(["SUMMARY", "OF", "RESULTS"], gap=500, tracking=2.5)
    # kerned pairs (W-a, A-V) and a pair set a little apart (t-o), the "fi" ligature (0xAE)
    kerned = "[(W)80(ater)-200(and)-200(AV)-200(t)-30(oday)-200(con\xaeguration.)] TJ"
    lines += [(72.0, 740.0, 14.0, heading), (72.0, 620.0, 9.0, kerned)]
    # a figure's frame drawn with rules, over the right of the paragraph's last line
    rules = " ".join(
        f"{x0} {y0} m {x1} {y1} l S"
        for x0, y0, x1, y1 in [
            (150, 650, 450, 650), (150, 686, 450, 686),
            (150, 650, 150, 686), (300, 650, 300, 686), (450, 650, 450, 686),
        ]
    )  # fmt: skip
    blocks = parse(PDF, make_pdf_typeset(lines, raw="0.5 w " + rules), LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        (
            "paragraph",
            "SUMMARY OF RESULTS The effect of this drug on sleep was measured in forty adults "
            "over six weeks of treatment at two clinics. Sleep was longer by Water and AV today "
            "configuration.",
        ),
        ("table", "half an hour on average. |"),
    ]


def test_a_letter_spaced_pdf_heading_in_a_table_keeps_its_words_whole():
    """A gap counts from the line's typical gap between letters: a heading set with its
    letters apart throughout (here 2.5 pt, a sixth of an em) is not cut into letters."""
    cells = [
        [typeset(["TOTAL", "COSTS"], gap=600, tracking=2.5), typeset(["Paid", "in", "full"])],
        [typeset(["Rent", "and", "heating"]), typeset(["Twelve", "months"])],
    ]
    lines = [
        (78.0 + 160 * c, 700.0 - 24 * r - 16, 10.0, cell)
        for r, row in enumerate(cells)
        for c, cell in enumerate(row)
    ]
    rules = " ".join(
        [f"72 {700 - 24 * r} m 392 {700 - 24 * r} l S" for r in range(3)]
        + [f"{72 + 160 * c} 700 m {72 + 160 * c} 652 l S" for c in range(3)]
    )
    blocks = parse(PDF, make_pdf_typeset(lines, raw="0.5 w " + rules), LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("table", "TOTAL COSTS | Paid in full"),
        ("table", "Rent and heating | Twelve months"),
    ]


def test_encrypted_pdf_fails_as_encrypted():
    with pytest.raises(ParseError) as excinfo:
        parse(PDF, make_encrypted_pdf(["secret"]), LIMITS)
    assert excinfo.value.code == "encrypted_pdf"


def test_pdf_without_text_fails_as_no_text():
    with pytest.raises(ParseError) as excinfo:
        parse(PDF, make_pdf([""]), LIMITS)
    assert excinfo.value.code == "no_text"


def test_truncated_pdf_fails_as_corrupt():
    with pytest.raises(ParseError) as excinfo:
        parse(PDF, make_pdf(["x"])[:60], LIMITS)
    assert excinfo.value.code in {"corrupt_file", "no_text"}


def test_pdf_whose_icc_colour_spaces_lack_their_component_count_is_read():
    """pdfminer failed such a page with a PDFKeyError ("does not have attribute 'N'"), whether
    the colour space is in the page's resources or in a form's it draws."""
    blocks = parse(PDF, make_pdf_icc_without_components(), LIMITS)
    assert [(b.text, b.page) for b in blocks] == [
        ("Refunds take five days.", 1),
        ("Exchanges take ten days.", 2),
    ]


def test_docx_headings_paragraphs_lists_and_tables_in_reading_order():
    blocks = parse(DOCX, make_docx(), LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("paragraph", "Welcome to the handbook.", ["Handbook"]),
        ("paragraph", "Ask your manager before you take leave.", ["Handbook", "Leave"]),
        ("list", "Twenty days a year", ["Handbook", "Leave"]),
        ("table", "Kind | Days", ["Handbook", "Leave"]),
        ("table", "Vacation | 20", ["Handbook", "Leave"]),
    ]


@pytest.mark.parametrize(
    ("kind", "data"),
    [(PDF, b"%PDF-1.4\nnot a PDF after all\n"), (DOCX, make_package_without_relationships())],
    ids=["pdf", "docx"],
)
def test_unreadable_files_say_so_to_people_and_name_the_cause_for_the_log(tmp_path, kind, data):
    path = tmp_path / "broken"
    path.write_bytes(data)
    with pytest.raises(ParseError) as excinfo:
        parse_isolated(path, kind, limits=LIMITS, memory_bytes=1 << 30, cpu_seconds=30,
                       wall_seconds=60)  # fmt: skip
    error = excinfo.value
    assert error.code == "corrupt_file"
    assert error.message.startswith(("The PDF cannot be read", "The DOCX cannot be read"))
    assert error.detail.isidentifier()  # the exception's class, e.g. PdfminerException
    assert error.detail not in error.message and "Exception" not in error.message


def test_docx_of_headings_only_is_indexed_as_its_headings():
    import docx

    document = docx.Document()
    document.add_heading("Annual report 2020", level=1)
    document.add_heading("Revenue grew by twelve percent", level=2)
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Annual report 2020", []),
        ("heading", "Revenue grew by twelve percent", ["Annual report 2020"]),
    ]


def test_docx_tables_in_table_cells_are_read_at_any_depth_once_each():
    import docx

    document = docx.Document()
    outer = document.add_table(rows=4, cols=2)
    outer.cell(0, 0).text, outer.cell(0, 1).text = "Region", "Offices"
    outer.cell(1, 0).text = "Europe"
    cell = outer.cell(1, 1)
    cell.paragraphs[0].text = "Two countries:"
    inner = cell.add_table(rows=2, cols=2)
    inner.cell(0, 0).text, inner.cell(0, 1).text = "France", "Paris"
    inner.cell(1, 0).text = "Germany"
    deepest = inner.cell(1, 1).add_table(rows=1, cols=2)
    deepest.cell(0, 0).text, deepest.cell(0, 1).text = "Berlin", "Bonn"
    cell.add_paragraph("Both open on weekdays.")
    merged = outer.cell(2, 0).merge(outer.cell(3, 1))  # two rows, two columns
    merged.paragraphs[0].text = "Asia"
    merged.add_table(rows=1, cols=2).rows[0].cells[0].text = "Tokyo"
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("table", "Region | Offices"),
        ("table", "Europe | Two countries: Both open on weekdays."),
        ("table", "France | Paris"),
        ("table", "Germany |"),
        ("table", "Berlin | Bonn"),
        ("table", "Asia"),
        ("table", "Tokyo |"),
        ("table", "Asia"),
    ]


def test_docx_text_in_content_controls_smart_tags_and_tracked_changes_is_read():
    document = make_docx_body(
        "<w:sdt><w:sdtPr><w:alias w:val='Summary'/></w:sdtPr><w:sdtContent>"
        "<w:p><w:r><w:t>Refunds take five days.</w:t></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Plan</w:t></w:r></w:p></w:tc>"
        "<w:tc><w:p><w:sdt><w:sdtContent><w:r><w:t>Days</w:t></w:r></w:sdtContent></w:sdt></w:p>"
        "</w:tc></w:tr></w:tbl></w:sdtContent></w:sdt>"
        "<w:p><w:r><w:t xml:space='preserve'>Ship to </w:t></w:r>"
        "<w:smartTag w:element='place'><w:r><w:t>Washington</w:t></w:r></w:smartTag>"
        "<w:ins w:id='1' w:author='a'><w:r><w:t xml:space='preserve'> by air</w:t></w:r></w:ins>"
        "<w:del w:id='2' w:author='a'><w:r><w:delText> by sea</w:delText></w:r></w:del>"
        "<w:moveFrom w:id='3' w:author='a'><w:r><w:t> by rail</w:t></w:r></w:moveFrom>"
        "<w:r><w:fldChar w:fldCharType='begin'/></w:r><w:r><w:instrText> SEQ </w:instrText></w:r>"
        "<w:r><w:fldChar w:fldCharType='separate'/></w:r><w:r><w:t>.</w:t></w:r>"
        "<w:r><w:fldChar w:fldCharType='end'/></w:r></w:p>"
    )
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "Refunds take five days."),
        ("table", "Plan | Days"),
        ("paragraph", "Ship to Washington by air."),
    ]


def test_docx_text_after_an_entity_reference_is_kept():
    """Entities are not resolved (no billion laughs); the text after a reference was lost with
    it ("Welcome to &co; headquarters" read as "Welcome to")."""

    def with_entity(name: str, content: bytes) -> bytes:
        if name != "word/document.xml":
            return content
        prolog, rest = content.split(b"?>", 1)
        rest = rest.replace(b"<w:t>", b"<w:t>Welcome to &co; headquarters. ", 1)
        return prolog + b'?><!DOCTYPE w:document [<!ENTITY co "Acme">]>' + rest

    blocks = parse(DOCX, rewrite_parts(make_docx(), with_entity), LIMITS)
    heading = " ".join(blocks[0].heading_path[0].split())  # the first w:t is the heading's
    assert heading == "Welcome to headquarters. Handbook"


def _text_box(text: str, *, drawingml: bool) -> str:
    content = f"<w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent>"
    if not drawingml:
        return f"<w:pict><v:shape><v:textbox>{content}</v:textbox></v:shape></w:pict>"
    return (
        "<w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp>"
        f"<wps:txbx>{content}</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing>"
    )


def test_docx_text_boxes_are_read_once_each_after_their_paragraph_and_ruby_without_its_guide():
    box = _text_box("Boxed note.", drawingml=True)
    copy = _text_box("Boxed note.", drawingml=False)
    document = make_docx_body(
        "<w:p><w:r><w:t>Anchor text.</w:t></w:r><w:r><mc:AlternateContent>"
        f"<mc:Choice Requires='wps'>{box}</mc:Choice><mc:Fallback>{copy}</mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>"
        f"<w:p><w:r>{_text_box('Old-style box.', drawingml=False)}</w:r></w:p>"
        "<w:p><w:r><w:t xml:space='preserve'>Tokyo is </w:t></w:r><w:ruby><w:rubyPr/>"
        "<w:rt><w:r><w:t>とうきょう</w:t></w:r></w:rt>"
        "<w:rubyBase><w:r><w:t>東京</w:t></w:r></w:rubyBase></w:ruby></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Cell</w:t></w:r>"
        f"<w:r>{_text_box('with a box', drawingml=True)}</w:r></w:p></w:tc></w:tr></w:tbl>"
    )
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "Anchor text."),
        ("paragraph", "Boxed note."),
        ("paragraph", "Old-style box."),
        ("paragraph", "Tokyo is 東京"),
        ("table", "Cell with a box"),
    ]


def test_docx_html_imported_as_an_alt_chunk_is_read_with_the_html_parser():
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml.ns import qn

    document = make_docx_body(
        "<w:p><w:pPr><w:pStyle w:val='Heading1'/></w:pPr><w:r><w:t>Imported</w:t></w:r></w:p>"
        "<w:altChunk/>"
    )
    page = b"<html><body><h2>Refunds</h2><p>Refunds take five days.</p></body></html>"
    part = Part(PackURI("/word/chunk.html"), "text/html", page, document.part.package)
    rid = document.part.relate_to(part, RT.A_F_CHUNK)
    document.element.body.find(qn("w:altChunk")).set(qn("r:id"), rid)
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.text, b.heading_path) for b in blocks] == [
        ("Refunds take five days.", ["Imported", "Refunds"])
    ]


def _note(kind: str, note_id: int, text: str, note_type: str = "") -> str:
    attribute = f" w:type='{note_type}'" if note_type else ""
    return (
        f"<w:{kind} w:id='{note_id}'{attribute}><w:p><w:r><w:{kind}Ref/></w:r>"
        f"<w:r><w:t xml:space='preserve'> {text}</w:t></w:r></w:p></w:{kind}>"
    )


def _with_notes() -> bytes:
    document = make_docx_body(
        "<w:p><w:pPr><w:pStyle w:val='Heading1'/></w:pPr><w:r><w:t>Leave</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Twenty days a year.</w:t></w:r>"
        "<w:r><w:footnoteReference w:id='2'/></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Sick leave</w:t></w:r></w:p></w:tc>"
        "<w:tc><w:p><w:r><w:t>Unlimited</w:t></w:r><w:r><w:endnoteReference w:id='1'/></w:r>"
        "</w:p></w:tc></w:tr></w:tbl>"
        "<w:p><w:r><w:t>As noted above.</w:t></w:r><w:r><w:footnoteReference w:id='2'/></w:r></w:p>"
    )
    add_notes_part(
        document,
        "footnote",
        "<w:footnote w:type='separator' w:id='-1'><w:p><w:r><w:separator/></w:r></w:p></w:footnote>"
        + _note("footnote", 0, "Continued on the next page.", "continuationNotice")
        + _note("footnote", 2, "Up to five days carry over to March.")
        + _note("footnote", 3, "A note nothing references."),
    )
    add_notes_part(document, "endnote", _note("endnote", 1, "With a doctor's note after a week."))
    return save_docx(document)


def test_docx_notes_follow_the_paragraph_or_row_that_references_them_once_each():
    blocks = parse(DOCX, _with_notes(), LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("paragraph", "Twenty days a year.", ["Leave"]),
        ("paragraph", "Up to five days carry over to March.", ["Leave"]),
        ("table", "Sick leave | Unlimited", ["Leave"]),
        ("paragraph", "With a doctor's note after a week.", ["Leave"]),
        ("paragraph", "As noted above.", ["Leave"]),
    ]


def test_docx_notes_part_that_is_a_bomb_fails_as_one_and_a_damaged_one_is_left_out():
    def footnotes(replace: Any) -> Any:
        def rewrite(name: str, content: bytes) -> bytes:
            return replace(content) if name == "word/footnotes.xml" else content

        return rewrite

    def laughs(content: bytes) -> bytes:
        prolog, rest = content.replace(b"carry over", b"carry &lol9; over").split(b"?>", 1)
        return prolog + b"?>" + billion_laughs("w:footnotes").encode() + rest

    with pytest.raises(ParseError) as excinfo:
        parse(DOCX, rewrite_parts(_with_notes(), footnotes(laughs)), LIMITS)
    assert excinfo.value.code == "xml_bomb"
    damaged = rewrite_parts(_with_notes(), footnotes(lambda content: content[:-20]))
    assert texts(parse(DOCX, damaged, LIMITS)) == [
        "Twenty days a year.",
        "Sick leave | Unlimited",
        "With a doctor's note after a week.",
        "As noted above.",
    ]


def test_docx_page_headers_and_footers_follow_the_body_each_text_once():
    import docx

    document = docx.Document()
    document.add_heading("Leave policy", level=1)
    document.add_paragraph("Twenty days a year.")
    first = document.sections[0]
    first.header.paragraphs[0].text = "Acme Corp HR"
    first.footer.paragraphs[0].text = "Effective 1 May 2024"
    first.footer.add_paragraph("7")  # a page number as Word caches it: no text to index
    first.footer.add_paragraph("Leave policy")  # the body has it already
    first.different_first_page_header_footer = True
    first.first_page_header.paragraphs[0].text = "Draft for the works council"
    second = document.add_section()
    second.header.is_linked_to_previous = False
    second.header.paragraphs[0].text = "Acme Corp HR"  # another part, the same text
    document.add_paragraph("Ask your manager first.")
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.text, b.heading_path) for b in blocks] == [
        ("Twenty days a year.", ["Leave policy"]),
        ("Ask your manager first.", ["Leave policy"]),
        ("Acme Corp HR", []),
        ("Effective 1 May 2024", []),
        ("Draft for the works council", []),
    ]


@pytest.mark.parametrize("convert", [as_strict, as_macro_enabled], ids=["strict", "docm"])
def test_strict_and_macro_enabled_docx_are_read_like_any_docx(convert):
    data = convert(make_docx())
    assert data != make_docx() and detect(data, "handbook.docx") == DOCX
    plain = parse(DOCX, make_docx(), LIMITS)
    assert [b.as_dict() for b in parse(DOCX, data, LIMITS)] == [b.as_dict() for b in plain]


SALES_CHART = (
    "<c:title><c:tx><c:rich><a:p><a:r><a:t>Sales by </a:t></a:r><a:r><a:t>quarter</a:t></a:r>"
    "</a:p></c:rich></c:tx></c:title><c:plotArea><c:lineChart>"
    "<c:ser><c:tx><c:strRef><c:strCache><c:pt idx='0'><c:v>North</c:v></c:pt></c:strCache>"
    "</c:strRef></c:tx><c:cat><c:strRef><c:strCache><c:pt idx='0'><c:v>Q1</c:v></c:pt>"
    "<c:pt idx='1'><c:v>Q2</c:v></c:pt></c:strCache></c:strRef></c:cat><c:val><c:numRef>"
    "<c:numCache><c:pt idx='0'><c:v>4.4000000000000004</c:v></c:pt><c:pt idx='1'><c:v>12</c:v>"
    "</c:pt></c:numCache></c:numRef></c:val></c:ser>"
    "<c:ser><c:tx><c:v>South</c:v></c:tx><c:val><c:numLit><c:pt idx='1'><c:v>7</c:v></c:pt>"
    "</c:numLit></c:val></c:ser></c:lineChart><c:catAx><c:title><c:tx><c:rich><a:p><a:r>"
    "<a:t>Quarter</a:t></a:r></a:p></c:rich></c:tx></c:title></c:catAx></c:plotArea>"
)
PIE_CHART = (
    "<c:plotArea><c:pieChart><c:ser><c:cat><c:strLit><c:pt idx='0'><c:v>Rent</c:v></c:pt>"
    "</c:strLit></c:cat><c:val><c:numLit><c:pt idx='0'><c:v>60</c:v></c:pt></c:numLit></c:val>"
    "</c:ser></c:pieChart></c:plotArea>"
)


def test_docx_charts_follow_their_paragraph_or_row_as_a_title_and_a_table_of_their_data():
    """A chart's title and numbers were not read at all (a report of charts read as empty);
    now they follow what they are anchored in, under its headings, a row per category."""
    document = make_docx_body(
        "<w:p><w:pPr><w:pStyle w:val='Heading1'/></w:pPr><w:r><w:t>Results</w:t></w:r></w:p>"
        f"<w:p><w:r><w:t>Sales rose all year.</w:t></w:r>{chart_drawing('rIdSales')}</w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Costs</w:t></w:r></w:p></w:tc>"
        f"<w:tc><w:p>{chart_drawing('rIdCosts')}</w:p></w:tc></w:tr></w:tbl>"
        f"<w:p>{chart_drawing('rIdGone')}</w:p>"  # a relationship that is not there
    )
    add_chart_part(document, "rIdSales", SALES_CHART)
    add_chart_part(document, "rIdCosts", PIE_CHART, number=2)
    blocks = parse(DOCX, save_docx(document), LIMITS)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("paragraph", "Sales rose all year.", ["Results"]),
        ("paragraph", "Chart: Sales by quarter", ["Results"]),
        ("table", "Quarter | North | South", ["Results"]),
        ("table", "Q1 | 4.4 |", ["Results"]),
        ("table", "Q2 | 12 | 7", ["Results"]),
        ("table", "Costs |", ["Results"]),
        ("paragraph", "Chart", ["Results"]),
        ("table", "Category | Series 1", ["Results"]),
        ("table", "Rent | 60", ["Results"]),
    ]


def test_docx_chart_part_that_is_a_bomb_fails_as_one_and_a_damaged_one_is_left_out():
    def with_chart(rewrite: Any) -> bytes:
        document = make_docx_body(f"<w:p><w:r><w:t>Kept.</w:t></w:r>{chart_drawing('rId90')}</w:p>")
        add_chart_part(document, "rId90", PIE_CHART)
        return rewrite_parts(
            save_docx(document),
            lambda name, content: rewrite(content) if name == "word/charts/chart1.xml" else content,
        )

    def laughs(content: bytes) -> bytes:
        prolog, rest = content.replace(b"Rent", b"Rent &lol9;").split(b"?>", 1)
        return prolog + b"?>" + billion_laughs("c:chartSpace").encode() + rest

    with pytest.raises(ParseError) as excinfo:
        parse(DOCX, with_chart(laughs), LIMITS)
    assert excinfo.value.code == "xml_bomb"
    assert texts(parse(DOCX, with_chart(lambda content: content[:-20]), LIMITS)) == ["Kept."]


def test_docx_zip_bomb_is_refused_before_unpacking():
    with pytest.raises(ParseError) as excinfo:
        parse(DOCX, make_zip_bomb(), LIMITS)
    assert excinfo.value.code == "zip_bomb"


@pytest.mark.parametrize(
    ("kind", "make", "code"),
    [
        (PDF, lambda: make_pdf_flate_bomb(400), "parse_memory"),  # inflates to 400 MB
        (PDF, lambda: make_pdf(["p"] * (LIMITS.max_pages + 1)), "too_many_pages"),
        (DOCX, make_docx_laughs, "xml_bomb"),
        (DOCX, make_zip_bomb, "zip_bomb"),
        (JSON, deep_json, "json_too_deep"),
    ],
    ids=["pdf-decompression", "pdf-pages", "docx-billion-laughs", "docx-zip", "json-deep"],
)
def test_bombs_fail_in_the_sandbox_with_their_code(tmp_path, kind, make, code):
    path = tmp_path / "bomb"
    path.write_bytes(make())
    with pytest.raises(ParseError) as excinfo:
        parse_isolated(path, kind, limits=LIMITS, memory_bytes=256 * 1024 * 1024,
                       cpu_seconds=30, wall_seconds=60)  # fmt: skip
    assert (excinfo.value.code, bool(excinfo.value.message)) == (code, True)
    # The sandbox keeps serving after each bomb.
    path.write_bytes(b"# A\n\nstill here")
    blocks = parse_isolated(path, MARKDOWN, limits=LIMITS, memory_bytes=1 << 30,
                            cpu_seconds=30, wall_seconds=60)  # fmt: skip
    assert texts(blocks) == ["still here"]


def test_html_entities_are_never_expanded():
    page = f"{billion_laughs('html')}<html><body><p>Kept. &lol9;</p></body></html>".encode()
    assert texts(parse(HTML, page, LIMITS)) == ["Kept. &lol9;"]


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (make_pdf(["x"]), "upload.bin", PDF),
        (make_docx(), "notes.txt", DOCX),
        (b"<!DOCTYPE html><html></html>", "page", HTML),
        (b'  {"a": 1}', "data", JSON),
        (b"# Title\n", "readme.md", MARKDOWN),
        (b"plain words", "notes", TEXT),
        (b"\x89PNG\r\n\x1a\n\0\0\0", "photo.pdf", None),
        (b"MZ\x90\0\x03\0\0\0", "setup.docx", None),
        (bytes(range(256)) * 4, "blob.txt", None),
    ],
)
def test_type_comes_from_the_content_not_the_name(data, name, expected):
    assert detect(data, name) == expected


def test_sandbox_returns_blocks(tmp_path):
    path = tmp_path / "doc.md"
    path.write_bytes(b"# A\n\nhello")
    blocks = parse_isolated(path, MARKDOWN, limits=LIMITS, memory_bytes=1 << 30,
                            cpu_seconds=30, wall_seconds=60)  # fmt: skip
    assert texts(blocks) == ["hello"]


def test_sandbox_kills_a_parse_that_runs_too_long(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(make_pdf([f"Page {n} text." for n in range(400)]))  # seconds of parsing
    with pytest.raises(ParseError) as excinfo:
        parse_isolated(path, PDF, limits=LIMITS, memory_bytes=1 << 30, cpu_seconds=30,
                       wall_seconds=0.05)  # fmt: skip
    assert excinfo.value.code == "parse_timeout"


def test_sandbox_contains_a_parse_that_needs_too_much_memory(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"word " * (8 * 1024 * 1024))  # 40 MB of text against a 96 MB address space
    with pytest.raises(ParseError) as excinfo:
        parse_isolated(path, TEXT, limits=LIMITS, memory_bytes=96 * 1024 * 1024, cpu_seconds=30,
                       wall_seconds=60)  # fmt: skip
    assert excinfo.value.code in {"parse_memory", "parser_crash"}


def test_sandbox_reports_parse_errors_with_their_code(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(deep_json())
    with pytest.raises(ParseError) as excinfo:
        parse_isolated(Path(path), JSON, limits=LIMITS, memory_bytes=1 << 30, cpu_seconds=30,
                       wall_seconds=60)  # fmt: skip
    assert excinfo.value.code == "json_too_deep"


def test_lone_surrogates_from_json_escapes_become_replacement_characters():
    blocks = parse(JSON, b'{"name": "a\\ud800b", "\\udc00key": "x"}', LIMITS)
    assert texts(blocks) == ["name: a\ufffdb\n\ufffdkey: x"]
    texts(blocks)[0].encode("utf-8")  # PostgreSQL-safe


def test_a_dead_zygote_is_replaced_and_the_one_shot_sandbox_still_works(tmp_path):
    import os
    import signal

    from knowledge.parsers import sandbox

    path = tmp_path / "doc.md"
    path.write_bytes(b"# A\n\nhello")
    args = {"limits": LIMITS, "memory_bytes": 1 << 30, "cpu_seconds": 30, "wall_seconds": 60}
    assert texts(parse_isolated(path, MARKDOWN, **args)) == ["hello"]
    zygote = sandbox._zygote.proc
    assert zygote is not None
    os.killpg(zygote.pid, signal.SIGKILL)
    zygote.wait()
    assert texts(parse_isolated(path, MARKDOWN, **args)) == ["hello"]
    assert sandbox._zygote.proc is not None and sandbox._zygote.proc.pid != zygote.pid
    assert texts(sandbox._spawn_isolated(path, MARKDOWN, **args)) == ["hello"]


def test_html_with_an_xml_prolog_and_nested_removed_elements():
    page = (
        b'<?xml version="1.0" encoding="utf-8"?>\n<html><body><nav><div><nav>inner menu</nav>'
        b"<script>x()</script></div></nav><header><!-- c --><nav>m</nav></header>"
        b"<p>Kept text.</p></body></html>"
    )
    assert texts(parse(HTML, page, LIMITS)) == ["Kept text."]

"""HTML: the main content (``<main>``, ``<article>``, ``role=main``, else ``<body>``) without
scripts, styles, navigation, headers, footers, forms and asides, and without the menus, link
lists and banners written as plain markup (knowledge.parsers.boilerplate); headings become the heading
path (a heading with no text under it a block of its own), tables become ``a | b | c`` rows.
lxml's HTML parser expands no external entities."""

from __future__ import annotations

import re
from typing import Any

from knowledge.parsers import Block, Limits, Outline, ParseError
from knowledge.parsers.boilerplate import boilerplate
from knowledge.parsers.text import decode

DROP = (
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "iframe", "svg", "canvas", "button", "select", "object", "embed",
)  # fmt: skip
DROP_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "menu")
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
UNREADABLE = "The HTML page cannot be read; its markup or encoding is damaged."
TEXT_BLOCKS = ("p", "li", "pre", "blockquote", "dd", "dt", "figcaption", "caption")


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,200}\?>")
# A DOCTYPE with an internal subset (entity declarations): lxml's HTML parser expands none of
# them but would show the subset's tail as text. Each class stops at the character that follows
# it, so the match is linear.
_DOCTYPE_SUBSET = re.compile(r"^\s*<!DOCTYPE[^\[>]{0,200}\[[^\]]*\]\s*>", re.IGNORECASE)


def _clean(text: str) -> str:
    return " ".join(text.split())


def parse(data: bytes, limits: Limits) -> list[Block]:
    try:
        return _parse(data, limits)
    except ParseError:
        raise
    except (ValueError, AssertionError, TypeError) as exc:  # lxml on pathological markup
        raise ParseError("corrupt_file", UNREADABLE, type(exc).__name__) from None


def _parse(data: bytes, limits: Limits) -> list[Block]:
    import lxml.html
    from lxml import etree

    # An XML prolog names an encoding; the text is decoded already and lxml refuses both.
    text = _DOCTYPE_SUBSET.sub("", _XML_DECLARATION.sub("", decode(data), count=1), count=1)
    if len(text) > limits.max_chars * 4:
        raise ParseError("too_much_text", "The page is too large.")
    try:
        root = lxml.html.document_fromstring(text or "<html></html>")
    except (etree.ParserError, ValueError) as exc:
        raise ParseError("corrupt_file", UNREADABLE, type(exc).__name__) from None
    unwanted = [
        *root.xpath("//comment()"),
        *(element for tag in DROP for element in root.iter(tag)),
        *(element for role in DROP_ROLES for element in root.xpath(f"//*[@role='{role}']")),
    ]
    for element in unwanted:  # collected first: dropping while iterating skips and detaches
        if element.getparent() is not None:
            element.drop_tree()
    main = (root.xpath("//main") or root.xpath("//*[@role='main']") or root.xpath("//article")
            or root.xpath("//body") or [root])[0]  # fmt: skip
    for element in boilerplate(main):
        element.drop_tree()
    title = _clean(" ".join(root.xpath("//title//text()")))
    outline = Outline()

    def walk(element: Any) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in HEADINGS:
            heading = _clean(element.text_content())
            if heading:
                outline.heading(HEADINGS[tag], heading)
            return
        if tag == "table":
            for row in element.iter("tr"):
                cells = [_clean(c.text_content()) for c in row if c.tag in ("td", "th")]
                if any(cells):
                    outline.add(" | ".join(cells), "table")
            return
        if tag in TEXT_BLOCKS:
            content = element.text_content()
            content = content.strip() if tag == "pre" else _clean(content)
            if content:
                outline.add(content, "code" if tag == "pre" else "paragraph")
            return
        if tag in ("div", "section", "main", "article", "body", "span", "td") and element.text:
            loose = _clean(element.text)
            if loose:
                outline.add(loose)
        for child in element:
            walk(child)
            if child.tail and _clean(child.tail):
                outline.add(_clean(child.tail))

    walk(main)
    blocks = outline.blocks()
    if title and blocks and not blocks[0].heading_path:
        for block in blocks:
            block.heading_path = (
                [title, *block.heading_path] if not block.heading_path else block.heading_path
            )
    return blocks

"""Boilerplate of an HTML page written as plain markup: menus, link lists, share bars,
breadcrumbs, tag clouds, related-links blocks and cookie banners that are not in a ``<nav>``,
``<header>``, ``<footer>`` or ``<aside>`` (knowledge.parsers.html drops those by their tag).

The rule, per block (a ``div``, ``ul``, ``ol``, ``dl``, ``section``, ``table``, ``menu`` or
``p``), looked at from the page's main element down, a dropped block's inside not looked at
(a link that shows its own address, "https://…", is a citation and counts as text):

- **link-dense**: it holds at least :data:`MIN_LINKS` links and at least
  :data:`LINK_DENSITY` of its characters are inside them (little other text);
- **named**: its ``class`` or ``id`` names a menu, share bar, breadcrumb, sidebar, tag list,
  related-links block or pager (:data:`MENU_NAMES`), a weaker signal, so it also needs a link
  and :data:`NAMED_LINK_DENSITY` of its characters inside links; or it names a cookie or
  consent banner (:data:`BANNER_NAMES`) and holds at most :data:`BANNER_CHARS` characters.

The cells of a table row that has a header cell are data and kept whole, and a block that
holds a table row of :data:`DATA_CELLS` cells or more with text and no link (a list of exhibits:
number, linked title, form, date) is not link-dense. A page whose content
is itself a list of links (a table of contents, a reference list) keeps it: when the link-dense
blocks without such a name hold more characters than the text left besides them, they are the
page's content, and only the named blocks go; a page that would be left with no text at all
(only a menu) keeps everything. A table of contents of a longer article goes: its entries are
the article's headings, which head the article's own blocks.
"""

from __future__ import annotations

import re
from typing import Any

BLOCKS = frozenset({"div", "ul", "ol", "dl", "section", "table", "menu", "p"})
MIN_LINKS = 3
LINK_DENSITY = 0.7
NAMED_LINK_DENSITY = 0.4
BANNER_CHARS = 1000
DATA_CELLS = 3
# Substrings of a class or id, lower case, as sites name these blocks.
MENU_NAMES = (
    "menu", "nav", "breadcrumb", "share", "sharing", "social", "related", "sidebar", "widget",
    "tags", "tagcloud", "tag-cloud", "categor", "pagination", "pager", "footer", "masthead",
    "promo", "sponsor", "subscribe", "newsletter", "toolbar", "catlinks", "topbar",
)  # fmt: skip
BANNER_NAMES = ("cookie", "consent", "gdpr")
ADDRESS_PREFIXES = ("http://", "https://", "www.")
_SPACE = re.compile(r"\s+")


def _chars(text: str | None) -> int:
    return len(_SPACE.sub("", text)) if text else 0


def _is_address(link: Any) -> bool:
    """A link that shows its own address ("https://…"): a citation, not a menu's entry."""
    return link.text_content().lstrip().lower().startswith(ADDRESS_PREFIXES)


def _name(element: Any) -> str:
    return f"{element.get('class') or ''} {element.get('id') or ''}".lower()


def boilerplate(main: Any) -> list[Any]:
    """The blocks under ``main`` (an lxml element) that are boilerplate by the rule above,
    outermost first; none is inside another."""
    # Characters, characters inside links and links, per element: one pass, children first.
    chars: dict[Any, int] = {}
    linked: dict[Any, int] = {}
    links: dict[Any, int] = {}
    # Whether it holds a data row: DATA_CELLS cells or more with text and no link.
    data: dict[Any, bool] = {}
    for element in reversed(list(main.iter())):
        total = _chars(element.text) if isinstance(element.tag, str) else 0
        inside = count = 0
        has_data = False
        for child in element:
            total += chars.get(child, 0) + _chars(child.tail)
            inside += linked.get(child, 0)
            count += links.get(child, 0)
            has_data = has_data or data.get(child, False)
        if element.tag == "a" and total and not _is_address(element):
            inside, count = total, 1
        if element.tag == "tr" and not has_data:
            cells = [c for c in element if c.tag in ("td", "th") and chars[c] and not links[c]]
            has_data = len(cells) >= DATA_CELLS
        chars[element], linked[element], links[element] = total, inside, count
        data[element] = has_data

    named: list[Any] = []
    dense: list[Any] = []
    stack = [main]
    while stack:
        element = stack.pop()
        for child in reversed(element):
            total = chars.get(child, 0)
            if child.tag == "td" and any(c.tag == "th" for c in element):
                # A row with a header cell is data ("Official languages | English, Māori"):
                # its cells are kept whole.
                continue
            if child.tag not in BLOCKS or not total:
                stack.append(child)
                continue
            density = linked[child] / total
            name = _name(child)
            banner = total <= BANNER_CHARS and any(n in name for n in BANNER_NAMES)
            menu = bool(links[child]) and density >= NAMED_LINK_DENSITY
            if banner or (menu and any(n in name for n in MENU_NAMES)):
                named.append(child)
            elif links[child] >= MIN_LINKS and density >= LINK_DENSITY and not data[child]:
                dense.append(child)
            else:
                stack.append(child)
    left = chars[main] - sum(chars[e] for e in named) - sum(chars[e] for e in dense)
    if sum(chars[e] for e in dense) > left:
        # The links are the page's content (a table of contents, a reference list).
        left += sum(chars[e] for e in dense)
        dense = []
    if not left:
        # A page that is only its menu is still that page.
        return []
    return named + dense

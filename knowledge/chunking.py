"""Structure-aware, token-counted, deterministic chunking.

Blocks from a parser are packed into chunks of at most ``size`` tokens (the embedding model's
tokenizer) without crossing a heading boundary or a page; a block too long for one chunk is split
at sentence ends (a sentence hard-wrapped over lines kept whole; a code line or a table row kept
one piece), and a sentence too long at word boundaries. The pieces of a split block keep the line
breaks between them (a table, code, a list stay lines; to the embedding model and full-text search
whitespace is whitespace); a chunk that a Markdown table's rows continue in begins with the
table's header and delimiter rows again. Consecutive chunks of one section share up to
``overlap`` tokens of whole sentences, never so many that the next piece does not fit. Each chunk keeps page, heading
path and its character offsets in the document's extracted text (blocks joined by blank lines).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from chatbot_site.text import SENTENCE_END, clip, split_sentences
from knowledge.parsers import Block

# Sentence ends (chatbot_site.text.SENTENCE_END: Latin, Devanagari, Arabic ones where whitespace
# follows, CJK ones wherever they stand), also with a reference mark after them ("1924.[28] By":
# a Wikipedia paragraph was one "sentence" longer than a chunk, cut inside a sentence).
_MARKS = [f"\\[{'[0-9]' * n}\\]" for n in (1, 2, 3)]  # [1] to [999], one or two of them
_SENTENCE_END = re.compile(
    "|".join(
        [SENTENCE_END]
        + [f"(?<=[.!?]{mark})\\s+" for mark in _MARKS]
        + [f"(?<=[.!?]{first}{second})\\s+" for first in _MARKS for second in _MARKS]
    )
)
# Blocks whose lines may be one sentence hard-wrapped; a line of code or a table row stands alone,
# and so does a line that begins a list item, a heading or a fence.
_WRAPPED = frozenset({"paragraph", "list"})
_ALONE = frozenset({"code", "table"})
_ROW = re.compile(r"[ \t]*\|")
# A Markdown table's header: a row, then its delimiter row ("|---|:--:|").
_TABLE_HEADER = re.compile(
    r"[ \t]*\|[^\n]*\n[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*(?:\n|$)"
)
_OWN_LINE = re.compile(r"[ \t]*(?:[-*+\u2022][ \t]|\d{1,9}[.)][ \t]|#|```|~~~)")
_WORD = re.compile(r"\S+")
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Japanese kana, CJK
# ideographs. A "word" of theirs longer than a chunk is text, not a hash or a base64 blob.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)


@dataclass
class Piece:
    text: str
    start: int  # character offset in the document text
    tokens: int
    block: int = 0  # blocks are joined by a blank line
    joiner: str = " "  # what joins it to the piece before it of its block: a space or a line break
    header: Piece | None = None  # a table row's: its table's header, which a chunk it opens repeats


@dataclass
class ChunkDraft:
    text: str
    page: int | None
    heading_path: list[str]
    char_start: int
    char_end: int
    token_count: int
    metadata: dict[str, object] = field(default_factory=dict)


def document_text(blocks: list[Block]) -> tuple[str, list[int]]:
    """The document's text and each block's start offset in it."""
    starts, parts, offset = [], [], 0
    for block in blocks:
        starts.append(offset)
        parts.append(block.text)
        offset += len(block.text) + 2
    return "\n\n".join(parts), starts


def _units(text: str, kind: str) -> list[tuple[int, int, bool]]:
    """Spans of ``text`` to split at sentence ends, and whether each is a line that stands
    alone (a code line, a table row: split only if it does not fit). In prose, the lines a hard
    wrap broke a sentence over stay together (a chunk then ends at a sentence end, not inside
    the sentence); a list item, a heading or a table row begins a line of its own, and a
    record's ``field: value`` lines are units of their own."""
    units: list[tuple[int, int, bool]] = []
    wrapped = kind in _WRAPPED
    position = 0
    broken = True  # the line before was blank (or there was none)
    for line in text.split("\n"):
        start, end = position, position + len(line)
        position = end + 1
        if not line.strip():
            broken = True
            continue
        alone = kind in _ALONE or bool(_ROW.match(line))
        if wrapped and not broken and not alone and not units[-1][2] and not _OWN_LINE.match(line):
            units[-1] = (units[-1][0], end, False)
            continue
        broken = False
        if not alone:  # a continuation line's indentation is not part of its sentence
            start += len(line) - len(line.lstrip())
        units.append((start, end, alone))
    return units


def _split(
    text: str, start: int, size: int, count: Callable[[str], int], kind: str = "paragraph"
) -> list[Piece]:
    """A block that does not fit: sentences (or lines of code and table rows), and words for
    one that does not fit. A piece that followed a line break is joined to the one before it by
    one, so a table, code or a hard-wrapped list keeps its lines."""
    pieces: list[Piece] = []
    end = 0  # where the previous piece ended, in ``text``

    def add(piece_text: str, index: int, stop: int, tokens: int) -> None:
        """A piece of ``text[index:stop]`` (the same text, or its words re-joined)."""
        nonlocal end
        joiner = "\n" if pieces and "\n" in text[end:index] else " "
        pieces.append(Piece(piece_text, start + index, tokens, joiner=joiner))
        end = stop

    for unit_start, unit_end, alone in _units(text, kind):
        unit = text[unit_start:unit_end]
        if alone and (tokens := count(unit)) <= size:
            add(unit, unit_start, unit_end, tokens)
            continue
        position = 0
        for sentence in split_sentences(unit, _SENTENCE_END):
            if not sentence.strip():
                continue
            index = unit.find(sentence, position)
            position = index + len(sentence)
            index += unit_start
            tokens = count(sentence)
            if tokens <= size:
                add(sentence, index, index + len(sentence), tokens)
                continue
            # The tokenizer splits on whitespace before anything else, so a window's tokens are
            # the sum of its words' tokens: each word is counted once (linear, not quadratic).
            window = ""
            window_tokens = 0
            window_start = window_end = index
            for match in _WORD.finditer(sentence):  # any whitespace: NBSP, U+3000, tabs too
                word, word_start = match.group(), index + match.start()
                word_tokens = count(word)
                if window and window_tokens + word_tokens > size:
                    add(window, window_start, window_end, window_tokens)
                    window, window_tokens = "", 0
                if word_tokens > size and _UNSPACED.search(word):
                    for run in _runs(word, word_start, size, count):
                        add(run.text, run.start, run.start + len(run.text), run.tokens)
                    continue
                if word_tokens > size:  # one "word" longer than a chunk (a hash, a base64 blob)
                    word, word_tokens = _prefix_within(clip(word, size * 2), size, count)
                if not window:
                    window_start = word_start
                else:  # the words of a hard-wrapped sentence keep their line breaks
                    window += "\n" if "\n" in text[window_end:word_start] else " "
                window += word
                window_end = word_start + len(match.group())
                window_tokens += word_tokens
            if window:
                add(window, window_start, window_end, window_tokens)
    return pieces


def _prefix_within(text: str, size: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The longest of ``text``, ``text`` halved, quartered... that counts at most ``size``
    tokens, and its count."""
    tokens = count(text)
    while tokens > size and len(text) > 1:
        text = clip(text, len(text) // 2)
        tokens = count(text)
    return text, tokens


def _runs(word: str, start: int, size: int, count: Callable[[str], int]) -> list[Piece]:
    """Text in a script without spaces, too long for a chunk: consecutive runs of at most
    ``size`` tokens, every character kept, cut between grapheme clusters (a Thai vowel mark
    stays with its consonant)."""
    pieces: list[Piece] = []
    position = 0
    while position < len(word):
        run, tokens = _prefix_within(clip(word[position : position + size + 1], size), size, count)
        pieces.append(Piece(run, start + position, tokens))
        position += len(run)
    return pieces


def _table_rows(
    text: str, start: int, pieces: list[Piece], size: int, count: Callable[[str], int]
) -> list[Piece]:
    """A Markdown table split over chunks: its header and delimiter rows become one piece (a
    chunk never ends between them), and each row after them gets that piece as its
    ``header``, for a chunk it opens to repeat. Rows without their header read as bare values
    to retrieval and to whoever reads the chunk ('| `HOST`, `PORT` | `127.0.0.1`, `8000` |':
    of what?)."""
    found = _TABLE_HEADER.match(text)
    if found is None or len(pieces) < 3:
        return pieces
    header_text = found.group(0).rstrip("\n")
    lead = len(header_text) - len(header_text.lstrip())
    header_text = header_text.strip()
    header = Piece(header_text, start + lead, count(header_text), pieces[0].block, "\n")
    if header.tokens > size // 2:  # a header that leaves rows no room is not repeated
        return pieces
    ends = start + found.end()
    rows = [piece for piece in pieces if piece.start >= ends]
    for piece in rows:
        if _ROW.match(piece.text):
            piece.header = header
    return [header, *rows]


def chunk_blocks(
    blocks: list[Block], *, size: int, overlap: int, count: Callable[[str], int]
) -> list[ChunkDraft]:
    _text, starts = document_text(blocks)
    drafts: list[ChunkDraft] = []
    current: list[Piece] = []
    section: tuple[tuple[str, ...], int | None] | None = None

    def emit(keep_overlap: bool, room: int = 0) -> None:
        """The chunk so far; with ``keep_overlap``, its last sentences that fit in ``overlap``
        and ``room`` (what the next piece leaves of ``size``) begin the next one."""
        nonlocal current
        if not current:
            return
        text = current[0].text
        for before, piece in itertools.pairwise(current):
            text += (piece.joiner if piece.block == before.block else "\n\n") + piece.text
        tokens = sum(p.tokens for p in current)
        if section is None:  # pragma: no cover - a piece always belongs to a section
            raise RuntimeError("chunk without a section")
        drafts.append(ChunkDraft(text, section[1], list(section[0]), current[0].start,
                                 current[-1].start + len(current[-1].text), tokens))  # fmt: skip
        carried: list[Piece] = []
        if keep_overlap and overlap > 0:
            budget = min(overlap, room)
            for piece in reversed(current):
                if piece.tokens > budget or len(carried) + 1 >= len(current):
                    break
                carried.insert(0, piece)
                budget -= piece.tokens
        current = carried

    for number, (block, start) in enumerate(zip(blocks, starts, strict=True)):
        key = (tuple(block.heading_path), block.page)
        if section is not None and key != section:
            emit(keep_overlap=False)
            current = []
        section = key
        tokens = count(block.text)
        pieces = [Piece(block.text, start, tokens)] if tokens <= size else _split(
            block.text, start, size, count, block.kind
        )  # fmt: skip
        for piece in pieces:
            piece.block = number
        pieces = _table_rows(block.text, start, pieces, size, count)
        for piece in pieces:
            header = piece.header
            extra = header.tokens if header is not None else 0
            if current and sum(p.tokens for p in current) + piece.tokens > size:
                # Carried sentences and the piece after them must fit too: a 205-token piece
                # after 64 carried made a 269-token chunk, more than the model embeds.
                emit(keep_overlap=True, room=size - piece.tokens - extra)
            if (
                header is not None
                # none of its table's pieces before the rows: the header is there already
                and all(p.block == piece.block and p.start > header.start for p in current)
                and sum(p.tokens for p in current) + extra + piece.tokens <= size
            ):
                current.insert(0, header)  # the rows it opens (and carries) under their header
            current.append(piece)
    emit(keep_overlap=False)
    return drafts

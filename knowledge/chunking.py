"""Structure-aware, token-counted, deterministic chunking.

Blocks from a parser are packed into chunks of at most ``size`` tokens (the embedding model's
tokenizer) without crossing a heading boundary or a page; a block too long for one chunk is split
at sentence ends, and a sentence too long at word boundaries. Consecutive chunks of one section
share up to ``overlap`` tokens of whole sentences. Each chunk keeps page, heading path and its
character offsets in the document's extracted text (blocks joined by blank lines).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from chatbot_site.text import SENTENCE_END, clip
from knowledge.parsers import Block

# Sentence ends (chatbot_site.text.SENTENCE_END: Latin, Devanagari, Arabic ones where whitespace
# follows, CJK ones wherever they stand) and line breaks.
_SENTENCE = re.compile(f"{SENTENCE_END}|\n+")
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
    block: int = 0  # pieces of one block are joined by a space, blocks by a blank line


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


def _split(text: str, start: int, size: int, count: Callable[[str], int]) -> list[Piece]:
    """A block that does not fit: sentences, and words for a sentence that does not fit."""
    pieces: list[Piece] = []
    position = 0
    for sentence in _SENTENCE.split(text):
        if not sentence.strip():
            continue
        index = text.find(sentence, position)
        position = index + len(sentence)
        tokens = count(sentence)
        if tokens <= size:
            pieces.append(Piece(sentence, start + index, tokens))
            continue
        # The tokenizer splits on whitespace before anything else, so a window's tokens are the
        # sum of its words' tokens: each word is counted once (linear, not quadratic).
        window: list[str] = []
        window_tokens = 0
        window_start = index
        for match in _WORD.finditer(sentence):  # any whitespace: NBSP, U+3000, tabs too
            word, word_start = match.group(), index + match.start()
            word_tokens = count(word)
            if window and window_tokens + word_tokens > size:
                pieces.append(Piece(" ".join(window), start + window_start, window_tokens))
                window, window_tokens = [], 0
            if word_tokens > size and _UNSPACED.search(word):
                pieces.extend(_runs(word, start + word_start, size, count))
                continue
            if word_tokens > size:  # one "word" longer than a chunk (a hash, a base64 blob)
                word, word_tokens = _prefix_within(clip(word, size * 2), size, count)
            if not window:
                window_start = word_start
            window.append(word)
            window_tokens += word_tokens
        if window:
            pieces.append(Piece(" ".join(window), start + window_start, window_tokens))
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


def chunk_blocks(
    blocks: list[Block], *, size: int, overlap: int, count: Callable[[str], int]
) -> list[ChunkDraft]:
    _text, starts = document_text(blocks)
    drafts: list[ChunkDraft] = []
    current: list[Piece] = []
    section: tuple[tuple[str, ...], int | None] | None = None

    def emit(keep_overlap: bool) -> None:
        nonlocal current
        if not current:
            return
        text = current[0].text
        for before, piece in itertools.pairwise(current):
            text += (" " if piece.block == before.block else "\n\n") + piece.text
        tokens = sum(p.tokens for p in current)
        if section is None:  # pragma: no cover - a piece always belongs to a section
            raise RuntimeError("chunk without a section")
        drafts.append(ChunkDraft(text, section[1], list(section[0]), current[0].start,
                                 current[-1].start + len(current[-1].text), tokens))  # fmt: skip
        carried: list[Piece] = []
        if keep_overlap and overlap > 0:
            budget = overlap
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
            block.text, start, size, count
        )  # fmt: skip
        for piece in pieces:
            piece.block = number
        for piece in pieces:
            if current and sum(p.tokens for p in current) + piece.tokens > size:
                emit(keep_overlap=True)
            current.append(piece)
    emit(keep_overlap=False)
    return drafts

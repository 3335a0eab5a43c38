"""Plain text: encoding detected (UTF-8, UTF-16 with BOM, else charset-normalizer's guess),
NUL bytes dropped, invalid sequences replaced — never a crash at insert. Paragraphs split on
blank lines."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from itertools import chain

from knowledge.parsers import Block, Limits, ParseError

_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")


def codec(name: str | bytes | None) -> str | None:
    """Python's name for an encoding a server or an upload's part declares (``text/plain;
    charset=KOI8-R``), or None for one it does not know or that is not a text encoding
    (``charset=base64``). Django's multipart parser gives a part's charset as bytes."""
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip("\"'"))
        b"-".decode(info.name, "ignore")  # LookupError for base64, hex, zlib, rot13 ...
    except (LookupError, ValueError):
        return None
    return info.name


BOMS = (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")


def as_utf8(data: bytes, charset: str | bytes | None) -> bytes:
    """Text in the encoding it came declared in (a URL's ``Content-Type``, an upload's multipart
    part), re-encoded as UTF-8, what :func:`decode` reads first: a short text is then not left
    to a guess. Returned as it came (for :func:`decode` to read or guess) when it starts with a
    byte order mark, is UTF-8 already (UTF-8 first: a legacy label on UTF-8 text is common), is
    declared in no text encoding Python knows, or is not valid in the one declared (the label
    lies). UTF-16 and UTF-32 are not ASCII-compatible, so their text is not tried as UTF-8."""
    encoding = codec(charset)
    if encoding is None or data.startswith(BOMS):
        return data
    if not encoding.startswith(("utf-16", "utf-32")):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return data
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        return data


class NotInCharset(ValueError):
    """Bytes the declared encoding has no character for: where, and which."""

    def __init__(self, encoding: str, offset: int, found: bytes) -> None:
        super().__init__(f"byte {found.hex(' ')} at offset {offset:,} is not {encoding} text")
        self.encoding, self.offset, self.found = encoding, offset, found


def utf8_pieces(pieces: Iterable[bytes], encoding: str, errors: str = "strict") -> Iterator[bytes]:
    """Text in ``encoding`` re-encoded as UTF-8 a piece at a time (an incremental decoder, so a
    character split between two pieces is whole in the output): memory is a piece's worth,
    however large the text. Strict unless told: :class:`NotInCharset` for bytes the encoding
    cannot read, with their offset in the whole text."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    consumed = 0  # bytes of the text before ``piece``
    for piece in chain(pieces, [b""]):  # an empty last piece: the decoder's final call
        pending = decoder.getstate()[0]  # bytes of a character begun in the last piece
        try:
            text = decoder.decode(piece, final=not piece)
        except UnicodeDecodeError as exc:
            offset = consumed - len(pending) + exc.start
            raise NotInCharset(encoding, offset, exc.object[exc.start : exc.end]) from None
        consumed += len(piece)
        if text:
            yield text.encode("utf-8")


def bom_codec(head: bytes) -> str | None:
    """The encoding a byte order mark names, as :func:`decode` reads it (``utf-8-sig`` drops
    the mark), or None."""
    if head.startswith(BOMS[:2]):
        return "utf-16"
    return "utf-8-sig" if head.startswith(BOMS[2]) else None


def decode(data: bytes) -> str:
    if data.startswith(BOMS[:2]):
        text = data.decode("utf-16", errors="replace")
    elif data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="replace")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            from charset_normalizer import from_bytes

            best = from_bytes(data[:1_000_000]).best()
            encoding = best.encoding if best is not None else "utf-8"
            text = data.decode(encoding, errors="replace")
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def parse(data: bytes, limits: Limits) -> list[Block]:
    text = decode(data)
    if len(text) > limits.max_chars:
        raise ParseError("too_much_text", f"More than {limits.max_chars:,} characters.")
    return [Block(p.strip()) for p in _PARAGRAPHS.split(text) if p.strip()]

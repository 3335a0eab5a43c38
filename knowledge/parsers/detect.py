"""The type of an upload, from its bytes first and its name second."""

from __future__ import annotations

import io
import zipfile

from knowledge.parsers import DOCX, HTML, JSON, MARKDOWN, PDF, TEXT, TEXT_TYPES
from knowledge.parsers.text import as_utf8, codec

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
# Magic numbers of common binaries that are not documents we read.
BINARY_MAGIC = (
    b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"MZ", b"\x7fELF", b"\x1f\x8b", b"BZh", b"7z\xbc\xaf",
    b"Rar!", b"\xd0\xcf\x11\xe0", b"OggS", b"RIFF", b"ID3", b"\x00\x00\x01\x00", b"%!PS",
)  # fmt: skip


def looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if not head:
        return True
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls / len(head) < 0.05


def detect(data: bytes, filename: str = "") -> str | None:
    """A supported content type, or None (the caller answers 415)."""
    head = data[:4096]
    name = filename.lower()
    if head[:1024].find(b"%PDF-") != -1:
        return PDF
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return DOCX
        except zipfile.BadZipFile:
            pass
        return DOCX if name.endswith(".docx") else None
    if head.startswith(BINARY_MAGIC) or not looks_like_text(head):
        return None
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"{", b"[")) and (
        name.endswith(".json") or not name.endswith(MARKDOWN_SUFFIXES)
    ):
        return JSON
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        name.endswith((".html", ".htm")) and b"<" in stripped[:200]
    ):
        return HTML
    if name.endswith(MARKDOWN_SUFFIXES):
        return MARKDOWN
    if name.endswith(".json"):
        return JSON
    return TEXT


def detect_declared(
    data: bytes, filename: str, charset: str | bytes | None
) -> tuple[str | None, bytes]:
    """:func:`detect`, for a document that came with a declared ``charset`` (a URL's
    ``Content-Type``, an upload's multipart part): its type, and its bytes, text re-encoded as
    UTF-8 from that charset (:func:`~knowledge.parsers.text.as_utf8`), which is what is stored
    and parsed. A PDF or DOCX, or a binary, is as it came; so is text the charset does not fit.
    Text in UTF-16 or UTF-32 without a byte order mark is only known for text once decoded."""
    content_type = detect(data, filename)
    encoding = codec(charset)
    if encoding is None:
        return content_type, data
    if content_type not in TEXT_TYPES and not (
        content_type is None and encoding.startswith(("utf-16", "utf-32"))
    ):
        return content_type, data
    text = as_utf8(data, encoding)
    if text is data:
        return content_type, data
    return detect(text, filename), text

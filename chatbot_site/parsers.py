"""Request body parsers."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from chatbot_site import pii

# PostgreSQL stores neither NUL in text or jsonb nor unpaired surrogates (no UTF-8 encodes
# them); JSON can carry both as escapes (\u0000, \ud800). Nor does jsonb hold NaN or infinity,
# which Python's json reads (NaN, Infinity, and 1e400 as inf).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = (
    "strings may not contain NUL (\\u0000) or unpaired surrogate (\\ud800-\\udfff) characters, "
    "and numbers must be finite (no NaN, Infinity or numbers past 1.8e308)."
)


def has_unstorable_text(value: Any) -> bool:
    """Whether any string of a parsed JSON value, key or value, or any of its numbers,
    PostgreSQL could not store. Iterative, so any depth is safe to walk."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, float):
            if not math.isfinite(item):  # a chat turn failed with a 500 after its answer
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def metadata_problem(metadata: Any, *, max_chars: int) -> str | None:
    """Why a client's ``metadata`` is refused, if it is: nested deeper than
    ``pii.MAX_DATA_DEPTH`` (masking walks it, and so does the staff admin's page, which failed
    with a RecursionError on a record nested 950 levels), or longer than ``max_chars`` as JSON."""
    if pii.data_depth(metadata) > pii.MAX_DATA_DEPTH:
        return f"At most {pii.MAX_DATA_DEPTH} levels of nesting."
    if len(json.dumps(metadata)) > max_chars:
        return f"At most {max_chars // 1000} kB of metadata."
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with JSON nested past Python's recursion limit and strings the
    database cannot store a 400 (not a 500 from the database or the encoder).

    The body is UTF-8 whatever ``charset`` its ``Content-Type`` declares: JSON is UTF-8 and
    ``application/json`` defines no charset parameter (RFC 8259 8.1, 11). DRF decoded it in
    the declared one, so UTF-8 "café" sent with ``charset=latin-1`` (a client library's
    default label) was stored as "cafÃ©", and ``charset=utf-7`` turned "+ADw-" into "<" after
    anything that read the bytes had passed them (``POST /v1/chat`` reads its body as bytes
    and never did)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        context = {**(parser_context or {}), "encoding": "utf-8"}
        try:
            data = super().parse(stream, media_type, context)
        except RecursionError:
            raise ParseError("JSON nested too deeply.") from None
        if has_unstorable_text(data):
            raise ParseError(UNSTORABLE_MESSAGE)
        return data

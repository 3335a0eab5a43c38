"""JSON: one text per record, each line ``field.path: value``.

A top-level array is a list of records; an object with one array of objects under a usual key
(``records``, ``data``, ``items``, ``results``, ``documents``) likewise; any other object is one
record. Depth is checked by a linear scan before ``json.loads`` (a 10,000-deep document fails
as ``json_too_deep``, not as a RecursionError), long strings are cut at ``max_json_string``.

A large array of nothing but numbers (GeoJSON coordinates, a time series) becomes one line with
its size and first values: thousands of numbers are nothing a question can be matched against,
and embedding them whole took a 2.2 MB GeoJSON file past the task's time limit."""

from __future__ import annotations

import json
from typing import Any

from knowledge.parsers import Block, Limits, ParseError
from knowledge.parsers.text import decode

RECORD_KEYS = ("records", "data", "items", "results", "documents", "entries")
MAX_NUMBERS = 64  # a numeric array with more numbers than this is summarised
FIRST_NUMBERS = 8
_DONE = object()


def numbers_in(value: list[Any]) -> list[float | int] | None:
    """The numbers of a (nested) array holding nothing else, in order; None otherwise."""
    found: list[float | int] = []
    stack: list[Any] = [iter(value)]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            found.append(item)
        else:
            return None
    return found


def max_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def lines(value: Any, limits: Limits, path: str = "") -> list[str]:
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            out += lines(item, limits, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(value, list):
        numbers = numbers_in(value)
        if numbers is not None and len(numbers) > MAX_NUMBERS:
            first = ", ".join(str(n) for n in numbers[:FIRST_NUMBERS])
            return [f"{path}: {len(numbers):,} numbers, the first {first}, ..."]
        if all(not isinstance(v, dict | list) for v in value):
            joined = ", ".join("" if v is None else str(v) for v in value)
            return [f"{path}: {joined[: limits.max_json_string]}"] if value else []
        out = []
        for index, item in enumerate(value):
            out += lines(item, limits, f"{path}[{index}]")
        return out
    if value is None or value == "":
        return []
    text = str(value)[: limits.max_json_string]
    return [f"{path}: {text}" if path else text]


def _json_lines(text: str) -> list[Any] | None:
    """JSON Lines / NDJSON: one value per non-empty line; None when it is not that either."""
    values = []
    for line in text.splitlines():
        if line.strip():
            try:
                values.append(json.loads(line))
            except (ValueError, RecursionError):
                return None
    return values or None


def parse(data: bytes, limits: Limits) -> list[Block]:
    text = decode(data)
    if len(text) > limits.max_chars:
        raise ParseError("too_much_text", f"More than {limits.max_chars:,} characters.")
    if max_depth(text) > limits.max_json_depth:
        raise ParseError("json_too_deep", f"JSON nested deeper than {limits.max_json_depth}.")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        document = _json_lines(text)
        if document is None:
            raise ParseError("invalid_json", f"Not valid JSON: {str(exc)[:200]}") from None
    records: list[Any]
    if isinstance(document, list):
        records = document
    elif isinstance(document, dict):
        nested = [document[k] for k in RECORD_KEYS if isinstance(document.get(k), list)]
        if not nested:
            nested = [
                v for v in document.values()
                if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
            ]  # fmt: skip
        records = nested[0] if len(nested) == 1 else [document]
    else:
        records = [document]
    blocks = []
    for index, record in enumerate(records):
        body = "\n".join(lines(record, limits))
        if body.strip():
            title = record.get("title") if isinstance(record, dict) else None
            heading = (
                [str(title)[:200]] if isinstance(title, str) and title else [f"Record {index + 1}"]
            )
            blocks.append(Block(body, "record", None, heading))
    return blocks

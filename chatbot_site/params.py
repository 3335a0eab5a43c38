"""Query-parameter parsing shared by list endpoints; bad values are field-level 400s. Tags,
as parameters and in bodies."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from chatbot_site.errors import ValidationFailed

# What parse_time accepts, for OpenApiParameter(type=...): a date or a date-time.
ISO_8601: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or date-time (naive = UTC), or None when absent."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)):
            parsed = dt.datetime.combine(day, dt.time.min)
        if parsed is not None:
            # In UTC: PostgreSQL refuses offsets past ±15:59, which Python allows up to ±23:59.
            parsed = parsed.replace(tzinfo=dt.UTC) if not parsed.tzinfo else parsed
            parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # out of range, or past year 9999 once in UTC
        parsed = None
    if parsed is None:
        raise ValidationFailed(details={name: ["Expected an ISO 8601 date or date-time."]})
    return parsed


ONE_DAY = dt.timedelta(days=1)
LAST_MOMENT = dt.datetime.max.replace(tzinfo=dt.UTC)


def parse_range(params: Mapping[str, str]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``?from=&to=`` of a list or report as ``[start, end)``, either None when absent — one
    rule for every route: ``from`` is inclusive; a date-time ``to`` is exclusive, and a date
    ``to`` takes in that whole day (UTC), so ``?from=2026-01-01&to=2026-01-31`` is January.
    A ``from`` after ``to`` is a field error. (Before, ``/v1/usage`` counted a date ``to`` as
    its last day while the lists stopped at that day's first instant, so the same range left
    out that day's conversations and audit entries; and only usage refused ``from`` > ``to``.)"""
    start = parse_time(params.get("from"), "from")
    end = parse_time(params.get("to"), "to")
    last_day = end.date() if end is not None and _is_date(params.get("to")) else None
    if end is not None and last_day is not None:
        # The next day's start (the last day there is: its last microsecond).
        end = end + ONE_DAY if last_day < dt.date.max else LAST_MOMENT
    # (A date 'to' is compared as a day: from=2026-02-01&to=2026-01-31 is an error.)
    after = last_day is not None and start is not None and start.date() > last_day
    if after or (start is not None and end is not None and start > end):
        raise ValidationFailed(details={"from": ["Must not be after 'to'."]})
    return start, end


# ``?from=&to=`` in the schema, for every route that reads them with :func:`parse_range`.
TIME_RANGE = [
    OpenApiParameter("from", ISO_8601, description="ISO 8601 date or date-time (UTC); inclusive."),
    OpenApiParameter(
        "to",
        ISO_8601,
        description="ISO 8601 date-time (UTC), exclusive; or a date: up to the end of that day.",
    ),
]


def _is_date(value: str | None) -> bool:
    """Whether ``value`` (already read by :func:`parse_time`) names a day, not a moment."""
    try:
        return bool(value) and parse_date(str(value)) is not None
    except ValueError:
        return False


def parse_uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(details={name: ["Must be a UUID."]}) from None


def parse_object_id(value: str | None, name: str) -> str | None:
    """An id the audit log names (``target_id``, ``actor_id``) as it stores it: a UUID (API
    objects and keys; any spelling ``uuid.UUID`` reads, stored in its canonical form) or a
    whole number (staff users and their memberships); anything else is a field error. It
    matched any string, so a typo or a truncated id was an empty page, not a 400."""
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 19:  # a bigint
        return str(int(value))
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationFailed(details={name: ["Must be a UUID or an integer id."]}) from None


def parse_bool(value: str | None, name: str) -> bool | None:
    """``true`` or ``false`` (also 1/0), or None when absent; anything else is a field error."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise ValidationFailed(details={name: ["Must be true or false."]})


MAX_TAG_CHARS = 100


def parse_tag(value: str) -> str:
    """A tag as it is stored and matched: in NFC, so that a tag written with a decomposed "é"
    (e + U+0301) is the same tag as one written with the precomposed character."""
    return unicodedata.normalize("NFC", value)


class TagField(serializers.CharField):
    """A tag in a request body (:func:`parse_tag`), at most :data:`MAX_TAG_CHARS` characters."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_TAG_CHARS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        return parse_tag(super().to_internal_value(data))


def unique_tags(tags: list[str]) -> list[str]:
    """Each tag once, in the order first given: tags are a set (a filter matches any of them),
    and ``["hr", "hr"]`` was stored as sent."""
    return list(dict.fromkeys(tags))


class TagListField(serializers.ListField):
    """Tags in a request body: each a :class:`TagField` (NFC, whitespace trimmed as every string
    field's, a blank one refused), each kept once (:func:`unique_tags`), case as sent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", TagField())
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        return unique_tags(super().to_internal_value(data))


def parse_tags(fields: list[str]) -> list[str]:
    """Tags typed in form fields (an upload's ``tags``, repeated or not; the staff admin's
    upload form): each field comma-separated or a JSON list of strings. The same tags as a JSON
    body's (:class:`TagListField`): NFC, whitespace trimmed, blank ones left out, each once,
    case as typed; at most 100 tags of at most :data:`MAX_TAG_CHARS` characters."""
    tags: list[str] = []
    for raw in (field.strip() for field in fields):
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValidationFailed(details={"tags": ["Expected a JSON list of strings."]})
            tags += value
        else:
            tags += raw.split(",")
    tags = unique_tags([parse_tag(t.strip()) for t in tags if t.strip()])
    if len(tags) > 100 or any(len(t) > MAX_TAG_CHARS for t in tags):
        raise ValidationFailed(details={"tags": ["At most 100 tags of at most 100 characters."]})
    return tags

"""Query-parameter parsing shared by list endpoints; bad values are field-level 400s. Tags,
as parameters and in bodies."""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
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


def parse_day(value: str | None, name: str) -> dt.date | None:
    moment = parse_time(value, name)
    return moment.date() if moment else None


def parse_uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(details={name: ["Must be a UUID."]}) from None


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

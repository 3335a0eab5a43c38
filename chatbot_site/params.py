"""Query-parameter parsing shared by list endpoints; bad values are field-level 400s."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

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
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationFailed(details={name: ["Expected an ISO 8601 date or date-time."]})
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


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

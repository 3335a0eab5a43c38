"""Keyset (cursor) pagination: ``?limit=50&cursor=...`` → ``{"data": [...], "next_cursor"}``.

Lists are ordered newest first by ``(created_at, id)``; the cursor is the position of the last
row returned, so pages stay stable while rows are added, and each page is one indexed query
(no OFFSET scans)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import Model, Q, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.request import Request

from chatbot_site.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def parse_limit(request: Request, *, default: int = DEFAULT_LIMIT, most: int = MAX_LIMIT) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise ValidationFailed(details={"limit": [f"Must be an integer from 1 to {most}."]})
    return limit


INVALID_CURSOR = {"cursor": ["Invalid cursor."]}


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(details=INVALID_CURSOR) from None


def encode_cursor(created_at: dt.datetime, pk: Any) -> str:
    return _encode(f"{created_at.isoformat()}|{pk}")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    created, _, pk = _decode(cursor).partition("|")
    try:
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None or not pk:
            raise ValueError("incomplete cursor")
        # In UTC: PostgreSQL refuses offsets past ±15:59, which Python allows up to ±23:59.
        return when.astimezone(dt.UTC), pk
    except (ValueError, OverflowError):
        raise ValidationFailed(details=INVALID_CURSOR) from None


def group_page(
    groups: QuerySet[Any],
    request: Request,
    *,
    column: str,
    parse: Callable[[str], Any],
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """The page after ``?cursor=`` of ``groups`` — rows of ``values(column)`` with aggregates,
    one per value of ``column`` — ordered by ``column`` (nulls last, as PostgreSQL orders them
    ascending), and the cursor of the next page: the last value, named after ``column`` so
    that a cursor of another grouping is refused. ``parse`` reads a value back."""
    ordered = groups.order_by(column)
    if cursor := request.query_params.get("cursor"):
        name, _, value = _decode(cursor).partition("|")
        try:
            if name != column or not value:
                raise ValueError("another grouping's cursor")
            after = parse(value)
        except (ValueError, OverflowError):
            raise ValidationFailed(details=INVALID_CURSOR) from None
        ordered = ordered.filter(Q(**{f"{column}__gt": after}) | Q(**{f"{column}__isnull": True}))
    rows = list(ordered[: limit + 1])
    page, more = rows[:limit], len(rows) > limit
    # The null group is last: a page with more after it ends on a value.
    next_cursor = _encode(f"{column}|{page[-1][column]}") if more else None
    return page, next_cursor


def paginate(
    queryset: QuerySet[Any],
    request: Request,
    serialize: Callable[[list[Any]], Any],
) -> dict[str, Any]:
    """One page of ``queryset`` (newest first) and the cursor of the next one."""
    page, next_cursor = keyset_page(queryset, request, limit=parse_limit(request))
    return {"data": serialize(page), "next_cursor": next_cursor}


def keyset_page(
    queryset: QuerySet[Any], request: Request, *, limit: int, oldest_first: bool = False
) -> tuple[list[Any], str | None]:
    """The page of ``queryset`` after ``?cursor=``, ordered by ``(created_at, pk)`` — newest
    first, or oldest first — and the cursor of the next page (None when it is the last)."""
    sign = "" if oldest_first else "-"
    ordered = queryset.order_by(f"{sign}created_at", f"{sign}pk")
    cursor = request.query_params.get("cursor")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        pk_value: Any = pk
        pk_field = queryset.model._meta.pk
        if pk_field is not None and pk_field.get_internal_type() == "UUIDField":
            try:
                pk_value = uuid.UUID(pk)
            except ValueError:
                raise ValidationFailed(details={"cursor": ["Invalid cursor."]}) from None
        # ``created_at <= cursor`` on its own is what the index range starts from; the OR alone
        # was a filter on every row of the index before the cursor (Rows Removed by Filter:
        # the cursor's position), so page 1,000 read the 999 pages before it.
        if oldest_first:
            ordered = ordered.filter(
                Q(created_at__gte=created_at),
                Q(created_at__gt=created_at) | Q(created_at=created_at, pk__gt=pk_value),
            )
        else:
            ordered = ordered.filter(
                Q(created_at__lte=created_at),
                Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk_value),
            )
    rows: list[Model] = list(ordered[: limit + 1])
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    next_cursor = encode_cursor(last.created_at, last.pk) if more and last else None  # type: ignore[attr-defined]
    return page, next_cursor


_PAGES: dict[str, type[serializers.Serializer]] = {}

PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        description=f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}.",
    ),
    OpenApiParameter("cursor", str, description="`next_cursor` of the previous page."),
]


def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of a page of ``item``: ``{"data": [item], "next_cursor": str | null}``."""
    name = item.__name__.removesuffix("Output") + "Page"
    if name not in _PAGES:
        _PAGES[name] = type(
            name,
            (serializers.Serializer,),
            {
                "data": item(many=True),
                "next_cursor": serializers.CharField(allow_null=True),
            },
        )
    return _PAGES[name]

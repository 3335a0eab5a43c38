"""Query parameters: what the list routes accept as times, and ``?from=&to=`` everywhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from chatbot_site.errors import ValidationFailed
from chatbot_site.params import parse_time
from conversations.models import Conversation
from tenants.models import AuditLog, UsageDaily
from tests.world import build_tenant


def test_times_are_read_as_utc():
    assert parse_time("2026-12-06", "from") == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    assert parse_time("2026-12-06T10:00:00", "from") == dt.datetime(2026, 12, 6, 10, tzinfo=dt.UTC)
    moment = parse_time("2026-12-06T10:00:00+02:00", "from")
    assert moment == dt.datetime(2026, 12, 6, 8, tzinfo=dt.UTC)
    assert moment is not None and moment.utcoffset() == dt.timedelta(0)


def test_an_offset_postgresql_refuses_is_converted_not_sent():
    """Found by fuzzing: +16:17 reached PostgreSQL (limit ±15:59) and was a 500."""
    moment = parse_time("3438-08-16T13:48:48.19+16:17", "from")
    assert moment == dt.datetime(3438, 8, 15, 21, 31, 48, 190000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01", "2026-12-06T25:00", "9999-12-31T23:59:59-14:00"]
)
def test_what_is_not_a_time_is_a_field_error(value):
    with pytest.raises(ValidationFailed) as excinfo:
        parse_time(value, "to")
    assert excinfo.value.details == {"to": ["Expected an ISO 8601 date or date-time."]}


@pytest.mark.django_db
def test_the_list_answers_a_far_offset(world):
    response = world.a.client().get("/v1/conversations", {"from": "3438-08-16T13:48:48.19+16:17"})
    assert response.status_code == 200, response.content
    assert response.json()["data"] == []


@pytest.mark.django_db
def test_is_active_filters_bots_and_refuses_what_is_not_a_boolean(world):
    client = world.a.client()
    assert [b["id"] for b in client.get("/v1/bots", {"is_active": "true"}).json()["data"]] == [
        str(world.a.bot.pk)
    ]
    assert client.get("/v1/bots", {"is_active": "false"}).json()["data"] == []
    response = client.get("/v1/bots", {"is_active": "null"})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"is_active": ["Must be true or false."]}


LAST_MOMENT_OF_JANUARY = dt.datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
RANGES = ["/v1/conversations", "/v1/audit-logs", "/v1/usage"]


def listed(client: Any, route: str, **params: str) -> list[Any]:
    """What ``route`` lists (or, for usage, the days it counts) for ``params``."""
    response = client.get(route, params)
    assert response.status_code == 200, response.content
    rows = response.json()["data"]
    return [row["day"] for row in rows] if route == "/v1/usage" else [row["id"] for row in rows]


@pytest.mark.django_db
def test_a_date_to_takes_in_that_whole_day_and_a_date_time_to_is_exclusive_on_every_route():
    """``?to=2026-01-31`` was that whole day on /v1/usage but its first instant, excluded, on
    /v1/conversations and /v1/audit-logs: a conversation of the last millisecond of January
    was not in January there, and its usage was."""
    side = build_tenant("acme")
    Conversation.objects.for_tenant(side.tenant).filter(pk=side.conversation.pk).update(
        created_at=LAST_MOMENT_OF_JANUARY
    )
    UsageDaily.objects.for_tenant(side.tenant).update(day=LAST_MOMENT_OF_JANUARY.date())
    # The audit log is append-only (its time cannot be set): its entry's own day, whichever.
    entry = AuditLog.objects.for_tenant(side.tenant).get()
    days = {
        "/v1/conversations": LAST_MOMENT_OF_JANUARY.date(),
        "/v1/audit-logs": entry.created_at.date(),
        "/v1/usage": LAST_MOMENT_OF_JANUARY.date(),
    }
    found = {
        "/v1/conversations": [str(side.conversation.pk)],
        "/v1/audit-logs": [str(entry.pk)],
        "/v1/usage": ["2026-01-31"],
    }
    client = side.client()
    for route in RANGES:
        day = days[route]
        before, after = str(day - dt.timedelta(days=1)), str(day + dt.timedelta(days=1))
        month = str(day.replace(day=1))
        for since, until, included in [
            (month, str(day), True),  # a date 'to': its whole day
            (str(day), str(day), True),
            (month, before, False),
            # A date-time 'to' is exclusive (for usage: the last day is the one before).
            (month, f"{day}T00:00:00Z", False),
            (month, f"{after}T00:00:00Z", True),
        ]:
            expected = found[route] if included else []
            assert listed(client, route, **{"from": since, "to": until}) == expected, (
                route,
                since,
                until,
            )


@pytest.mark.django_db
@pytest.mark.parametrize("route", RANGES)
def test_from_after_to_is_the_same_field_error_on_every_route(route):
    """Only /v1/usage refused it; the lists answered an empty page."""
    client = build_tenant("acme").client()
    for since, until in [
        ("2026-02-01", "2026-01-31"),
        ("2026-01-31T12:00:00Z", "2026-01-31T11:59:59Z"),
    ]:
        response = client.get(route, {"from": since, "to": until})
        assert response.status_code == 400, (route, since, until)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"] == {"from": ["Must not be after 'to'."]}
    # A day's range of one day, or ending in that day, is no error.
    assert client.get(route, {"from": "2026-01-31", "to": "2026-01-31"}).status_code == 200
    assert (
        client.get(route, {"from": "2026-01-31T12:00:00Z", "to": "2026-01-31"}).status_code == 200
    )

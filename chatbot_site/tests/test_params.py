"""Query parameters: what the list routes accept as times."""

from __future__ import annotations

import datetime as dt

import pytest

from chatbot_site.errors import ValidationFailed
from chatbot_site.params import parse_time


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

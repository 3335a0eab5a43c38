"""Every /v1 route that reads a JSON body answers a body the database cannot store, or one
nested past what the parser can read, with `400 invalid_request` — never a 500. Found by
fuzzing the served API (schemathesis): NUL in record metadata or chat metadata reached
PostgreSQL's jsonb, an unpaired surrogate reached the UTF-8 encoder, and the documents route
parsed JSON without the depth guard. NaN, Infinity and 1e400 (read as inf) too: jsonb holds
none of them, and a chat turn failed after its answer (a security audit, 2026-12-06)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_api_isolation import fill, v1_routes, verbs
from tests.world import World

pytestmark = pytest.mark.django_db(transaction=True)  # /v1/chat reads on its own thread

BODIES = {
    "nul in a nested value": '{"records": [{"title": "T", "text": "x", "metadata": {"a": "x\\u0000y"}}], '
    '"metadata": {"a": ["x\\u0000y"]}, "name": "x"}',
    "unpaired surrogate in a key": '{"metadata": {"\\ud800": 1}, "name": "x", '
    '"records": [{"title": "T", "text": "x", "metadata": {"\\udfff": 1}}]}',
    "nested past the parser": '{"metadata": ' + "[" * 5000 + "]" * 5000 + "}",
    # Python reads these, jsonb does not: a chat turn failed after its answer, unbilled.
    "NaN": '{"metadata": {"x": NaN}, "name": "x", "records": [{"title": "T", "text": "x", "metadata": {"x": NaN}}]}',
    "a float past 1.8e308": '{"metadata": {"x": [1e400]}, "name": "x", '
    '"records": [{"title": "T", "text": "x", "metadata": {"x": -1e400}}]}',
}


def body_routes(world: World) -> Iterator[tuple[str, str, str]]:
    """(route, verb, path) of every /v1 write that reads a body, filled with world.a's ids."""
    for route, view in v1_routes():
        for verb in verbs(view):
            if verb in {"post", "patch", "put"} and not route.endswith("reingest"):
                yield route, verb, fill(route, world.a)


def lenient_client(world: World) -> Any:
    client = world.a.client()
    client.raise_request_exception = False  # a 500 is asserted against, not raised
    return client


@pytest.mark.parametrize("name", BODIES)
def test_every_json_route_refuses_the_body_as_invalid(world: World, name: str):
    body = BODIES[name]
    client = lenient_client(world)
    checked = 0
    for _route, verb, path in body_routes(world):
        response = getattr(client, verb)(path, data=body, content_type="application/json")
        assert response.status_code == 400, f"{verb.upper()} {path}: {response.content[:300]!r}"
        error = response.json()["error"]
        assert error["code"] == "invalid_request", f"{verb.upper()} {path}: {error}"
        assert error["message"].startswith("Malformed request body"), error
        checked += 1
    assert checked >= 10


def test_text_with_those_characters_escaped_is_still_text(world: World):
    """A backslash followed by "u0000" is four ordinary characters, stored as sent."""
    response = world.a.client().post(
        f"/v1/datasets/{world.a.dataset.pk}/documents",
        data='{"records": [{"title": "T", "text": "a literal \\\\u0000 and \\\\ud800", "metadata": {"k": "\\\\u0000"}}]}',
        content_type="application/json",
    )
    assert response.status_code == 202, response.content


def test_only_adding_a_document_takes_multipart(world: World):
    """The admin API is JSON: a form has no lists or nulls (`tags={}` became ["{}"] and an
    empty `expires_at` a null when every route took multipart). 415 names what is expected."""
    client = lenient_client(world)
    checked = 0
    for route, verb, path in body_routes(world):
        response = getattr(client, verb)(path, {"name": "x", "tags": "{}"}, format="multipart")
        if route.endswith("/documents"):
            assert response.status_code == 400, response.content  # a form without a file
            assert response.json()["error"]["details"] == {"file": ["No file was submitted."]}
            continue
        assert response.status_code == 415, f"{verb.upper()} {path}: {response.content[:300]!r}"
        assert response.json()["error"]["code"] == "unsupported_media_type"
        checked += 1
    assert checked >= 10


def test_every_read_refuses_a_query_parameter_with_nul(world: World):
    """Found by fuzzing: `?tag=a%00b` reached PostgreSQL (which stores no NUL) as a 500."""
    client = lenient_client(world)
    checked = 0
    for route, view in v1_routes():
        if "get" not in verbs(view) or route in {"v1/health", "v1/schema", "v1/docs"}:
            continue
        path = fill(route, world.a)
        for query in ("?tag=a%00b", "?a%00b=1"):
            response = client.get(path + query)
            assert response.status_code == 400, f"GET {path}{query}: {response.content[:300]!r}"
            assert response.json()["error"]["code"] == "invalid_request"
        checked += 1
    assert checked >= 10


def test_the_staff_admin_refuses_a_query_parameter_with_nul(world: World):
    """Django's admin filters passed `?name=%00` to PostgreSQL as well (a 500)."""
    from tests.staff import staff_client

    client = staff_client(world.a.tenant, superuser=True)
    client.raise_request_exception = False
    for path in ("/admin/bots/bot/?name=%00", "/admin/knowledge/document/?q=a%00b"):
        response = client.get(path)
        assert response.status_code == 400, (path, response.status_code)
        assert response.json()["error"]["code"] == "invalid_request"
        assert response.json()["error"]["request_id"] == response["X-Request-ID"]
    assert client.get("/admin/bots/bot/?is_active__exact=1").status_code == 200

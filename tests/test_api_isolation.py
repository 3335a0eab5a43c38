"""Tenant isolation, proven for every /v1 route in the URL conf — including routes added later.

Walks the resolver, and for every route and verb sends tenant A's admin key against tenant B's
objects: each must be `404 not_found` (never 403, never B's data), B's objects must be intact
afterwards, and no list A can read may contain any of B's ids. A route whose path parameter this
test does not know fails the test until someone teaches it (PARAMS below)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.world import World

pytestmark = pytest.mark.django_db

PUBLIC = {"v1/health", "v1/schema", "v1/docs", "v1/auth/token"}
# Path parameter → the kind of object it names (keys of TenantWorld.objects).
PARAMS = {
    "bot_id": "bot",
    "scope_id": "scope",
    "dataset_id": "dataset",
    "document_id": "document",
    "key_id": "api_key",
    "conversation_id": "conversation",
}
METHODS = ("get", "post", "patch", "put", "delete")
BODY = {"name": "renamed-by-another-tenant", "role": "admin", "api_key": "x", "query": "x"}


def v1_routes() -> list[tuple[str, Any]]:
    """(route, view class) for every pattern under v1/."""
    found: list[tuple[str, Any]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("v1/"):
                view = getattr(pattern.callback, "view_class", None) or getattr(
                    pattern.callback, "cls", None
                )
                found.append((route, view))

    walk(get_resolver().url_patterns, "")
    assert len(found) >= 15, found
    return found


def verbs(view: type) -> list[str]:
    return [m for m in METHODS if hasattr(view, m)]


def params_of(route: str) -> list[str]:
    return re.findall(r"<(?:\w+:)?(\w+)>", route)


def fill(route: str, world_side) -> str:
    path = route
    for name in params_of(route):
        assert name in PARAMS, f"{route}: unknown path parameter {name!r}; add it to PARAMS"
        obj = world_side.objects[PARAMS[name]]
        path = re.sub(rf"<(?:\w+:)?{name}>", str(obj.pk), path)
    return "/" + path


def test_every_private_route_refuses_requests_without_credentials(world: World, client):
    for route, view in v1_routes():
        if route in PUBLIC:
            continue
        for verb in verbs(view):
            response = getattr(client, verb)(
                fill(route, world.b), data={}, content_type="application/json"
            )
            assert response.status_code == 401, f"{verb.upper()} {route}: {response.status_code}"
            assert response.json()["error"]["code"] == "authentication_failed"


def test_another_tenants_object_is_404_on_every_route_and_verb(world: World):
    a = world.a.client()
    checked = 0
    for route, view in v1_routes():
        if route in PUBLIC or not params_of(route):
            continue
        path = fill(route, world.b)
        for verb in verbs(view):
            response = getattr(a, verb)(path, data=BODY, format="json")
            assert response.status_code == 404, f"{verb.upper()} {path}: {response.status_code}"
            body = response.json()
            assert body["error"]["code"] == "not_found", body
            assert not world.b.ids() & set(re.findall(r"[0-9a-f-]{36}", json.dumps(body)))
            checked += 1
        # Tenant B still sees its object, unchanged.
        if "get" in verbs(view):
            mine = world.b.client().get(path)
            assert mine.status_code == 200, f"GET {path} as its owner: {mine.status_code}"
            assert "renamed-by-another-tenant" not in mine.content.decode()
    assert checked >= 12


def test_the_same_routes_answer_their_owner(world: World):
    """The other half of the proof: the ids used above are right, so 404 means 'not yours'."""
    b = world.b.client()
    for route, view in v1_routes():
        if route in PUBLIC or not params_of(route) or "get" not in verbs(view):
            continue
        path = fill(route, world.b)
        assert b.get(path).status_code == 200, path


def test_no_list_leaks_another_tenants_rows(world: World):
    a = world.a.client()
    b_ids = world.b.ids()
    for route, view in v1_routes():
        if route in PUBLIC or "get" not in verbs(view):
            continue
        path = fill(route, world.a)
        response = a.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code}"
        leaked = b_ids & set(re.findall(r"[0-9a-f-]{36}", response.content.decode()))
        assert not leaked, f"GET {path} shows tenant B's ids {leaked}"


def test_another_tenants_objects_cannot_be_referenced_in_writes(world: World):
    a = world.a.client()
    bot = a.post(
        "/v1/bots",
        {"name": "x", "dataset_ids": [str(world.b.dataset.pk)], "scope_id": str(world.b.scope.pk)},
        format="json",
    )
    assert bot.status_code == 400
    assert set(bot.json()["error"]["details"]) == {"dataset_ids", "scope_id"}
    key = a.post("/v1/api-keys", {"role": "chat", "bot_ids": [str(world.b.bot.pk)]}, format="json")
    assert key.status_code == 400
    assert "bot_ids" in key.json()["error"]["details"]
    patch = a.patch(
        f"/v1/bots/{world.a.bot.pk}", {"dataset_ids": [str(world.b.dataset.pk)]}, format="json"
    )
    assert patch.status_code == 400

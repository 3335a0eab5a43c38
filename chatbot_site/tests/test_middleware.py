"""Django's middleware under ASGI: API requests pass the browser middleware by, and no hook
is sent to a thread on their way; the staff admin keeps its sessions, CSRF and security
headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref import sync
from django.conf import settings
from django.test import AsyncClient
from django.utils.deprecation import MiddlewareMixin

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hops(monkeypatch) -> list[Any]:
    """Every function handed to ``sync_to_async`` while the fixture is active (spied on, still
    run): a hop from the event loop to a thread."""
    handed: list[Any] = []
    original = sync.SyncToAsync.__init__

    def init(self, func, *args, **kwargs):
        handed.append(func)
        original(self, func, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__init__", init)
    return handed


def middleware_hooks(handed: list[Any]) -> list[str]:
    return [
        f"{type(fn.__self__).__name__}.{fn.__name__}"
        for fn in handed
        if isinstance(getattr(fn, "__self__", None), MiddlewareMixin)
    ]


def test_an_api_request_sends_no_middleware_hook_to_a_thread(hops):
    response = asyncio.run(AsyncClient().get("/v1/no-such-thing"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert middleware_hooks(hops) == []
    # The headers the computing middleware adds are still there, and nothing of a browser's.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert "Set-Cookie" not in response
    assert "Cookie" not in response.get("Vary", "")


def test_the_staff_admin_keeps_its_session_and_csrf_middleware(hops):
    response = asyncio.run(AsyncClient().get(f"/{settings.ADMIN_URL}login/"))
    assert response.status_code == 200
    assert "csrftoken" in response.cookies  # CSRF ran (its hooks in a thread, as Django does)
    hooks = middleware_hooks(hops)
    assert "SessionMiddleware.process_response" in hooks
    assert "CsrfViewMiddleware.process_view" in hooks
    assert not any(h.startswith(("SecurityMiddleware.", "CommonMiddleware.")) for h in hooks)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    # CSRF is enforced on the admin's forms, and not on the API (keys, not cookies).
    strict = AsyncClient(enforce_csrf_checks=True)
    login = {"username": "x", "password": "y"}
    assert asyncio.run(strict.post(f"/{settings.ADMIN_URL}login/", login)).status_code == 403
    assert asyncio.run(strict.post("/v1/auth/token", {})).status_code != 403


def test_the_deployment_check_misses_no_middleware_django_would(settings):
    from chatbot_site.checks import middleware_installed

    assert middleware_installed() == []
    settings.MIDDLEWARE = [
        m
        for m in settings.MIDDLEWARE
        if not m.endswith(("SecurityMiddleware", "CsrfViewMiddleware"))
    ]
    assert [w.id for w in middleware_installed()] == ["chatbot_site.W001", "chatbot_site.W003"]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    assert [w.id for w in middleware_installed()] == ["chatbot_site.W001"]

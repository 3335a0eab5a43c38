"""``OPTIONS`` answers alike on every ``/v1`` path: ``200``, empty, with ``Allow`` (after the key where
the path needs one), and a CORS preflight is still django-cors-headers' answer."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)  # /v1/chat reads the key in a thread


@pytest.fixture
def side() -> TenantWorld:
    return build_tenant("acme")


def keyed_paths(side: TenantWorld) -> dict[str, set[str]]:
    return {
        "/v1/chat": {"POST"},
        "/v1/retrieve": {"POST"},
        "/v1/bots": {"GET", "HEAD", "POST"},
        f"/v1/bots/{side.bot.pk}": {"GET", "HEAD", "PATCH", "DELETE"},
        "/v1/scopes": {"GET", "HEAD", "POST"},
        f"/v1/datasets/{side.dataset.pk}/documents": {"GET", "HEAD", "POST"},
        f"/v1/documents/{side.document.pk}/reingest": {"POST"},
        f"/v1/conversations/{side.conversation.pk}": {"GET", "HEAD", "DELETE"},
        "/v1/api-keys": {"GET", "HEAD", "POST"},
        "/v1/usage": {"GET", "HEAD"},
        "/v1/audit-logs": {"GET", "HEAD"},
    }


PUBLIC_PATHS = {
    "/v1/health": {"GET", "HEAD"},
    "/v1/auth/token": {"POST"},
    "/v1/schema": {"GET", "HEAD"},
    "/v1/docs": {"GET", "HEAD"},  # was a 500: its HTML renderer had no template for DRF's
}


def allowed(response) -> set[str]:
    return {method.strip() for method in response["Allow"].split(",")}


def test_options_is_an_empty_200_with_allow_on_every_path(side):
    """``/v1/chat`` answered ``405``; the DRF views ``200`` with their metadata, rendered as
    YAML on ``/v1/schema`` and as a ``500`` on ``/v1/docs``."""
    client = side.client()
    for path, methods in {**keyed_paths(side), **PUBLIC_PATHS}.items():
        response = client.options(path)
        assert response.status_code == 200, (path, response.status_code, response.content)
        assert allowed(response) == methods | {"OPTIONS"}, path
        assert response.content == b"" and "Content-Type" not in response, path
        assert response["Content-Length"] == "0", path  # RFC 9110 9.3.7
        if path in keyed_paths(side):
            assert "RateLimit-Remaining" in response, path


def test_options_needs_the_key_where_the_path_does(side):
    anonymous = APIClient()
    for path in keyed_paths(side):
        response = anonymous.options(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "authentication_failed", path
    for path in PUBLIC_PATHS:
        assert anonymous.options(path).status_code == 200, path


def test_a_wrong_method_on_chat_names_options_as_allowed(side):
    response = side.client().put("/v1/chat")
    assert response.status_code == 405
    assert allowed(response) == {"POST", "OPTIONS"}


def test_a_preflight_is_still_answered_by_the_cors_middleware(side, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    for path in ("/v1/chat", "/v1/bots", "/v1/docs"):
        response = APIClient().options(
            path,
            HTTP_ORIGIN="https://app.example.com",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
        )
        assert response.status_code == 200, path  # no key needed: a browser sends none
        assert response["Access-Control-Allow-Origin"] == "https://app.example.com", path


def test_an_unknown_path_is_404_to_options_and_names_no_method(side):
    """Its 404 said ``Allow: OPTIONS``, a method that path answered 404 to as well."""
    for client in (side.client(), APIClient()):
        for method in ("options", "get"):
            response = getattr(client, method)("/v1/nothing-here")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
            assert "Allow" not in response

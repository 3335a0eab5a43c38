from __future__ import annotations

import pytest

from tenants.tests.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _origins(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]


def preflight(client, origin: str):
    return client.options(
        "/v1/bots",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )


def test_allowed_origin_gets_cors_headers_without_credentials(client):
    response = preflight(client, "https://app.example.com")
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response


def test_other_origins_get_no_cors_headers(client):
    response = preflight(client, "https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in response
    plain = client.get("/v1/health", HTTP_ORIGIN="https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in plain


def test_a_browser_client_may_send_its_request_id(client):
    """API.md: the service echoes a client's ``X-Request-ID``. A browser sends that header only
    if the preflight allows it; it did not, so the browser blocked the whole request."""
    response = client.options(
        "/v1/chat",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,x-request-id",
    )
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].lower().split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= allowed


def test_a_browser_client_may_read_the_contract_headers(api_client):
    """The request id, the rate-limit headers and Retry-After are on every keyed response; a
    script reads a cross-origin response's headers only if they are exposed."""
    key = ApiKeyFactory()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    response = api_client.get(
        "/v1/bots", HTTP_ORIGIN="https://app.example.com", HTTP_X_REQUEST_ID="browser-1"
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "browser-1"
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
            "retry-after"} <= exposed  # fmt: skip


def test_the_staff_admin_is_not_shared_with_other_origins(client):
    """CORS is for the API: an allowed origin got Access-Control-Allow-Origin on admin pages."""
    response = client.get("/admin/login/", HTTP_ORIGIN="https://app.example.com")
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" in client.get(
        "/v1/health", HTTP_ORIGIN="https://app.example.com"
    )


def test_a_query_string_with_nul_is_refused_readably_for_an_allowed_origin(client):
    """That 400 is answered before django-cors-headers' middleware runs: a page of an allowed
    origin saw 'Failed to fetch', not the error."""
    nul = client.get("/v1/bots?cursor=%00", HTTP_ORIGIN="https://app.example.com")
    assert nul.status_code == 400
    assert nul.json()["error"]["code"] == "invalid_request"
    assert nul["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-request-id" in nul["Access-Control-Expose-Headers"].lower()

    other = client.get("/v1/bots?cursor=%00", HTTP_ORIGIN="https://evil.example.net")
    assert other.status_code == 400 and "Access-Control-Allow-Origin" not in other
    admin = client.get("/admin/login/?next=%00", HTTP_ORIGIN="https://app.example.com")
    assert admin.status_code == 400 and "Access-Control-Allow-Origin" not in admin

from __future__ import annotations

import pytest

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

"""Every error source answers in the contract's envelope."""

from __future__ import annotations

import json

import pytest
from django.test import Client

pytestmark = [pytest.mark.urls("chatbot_site.tests.urls_errors")]


def envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response["X-Request-ID"]
    return error


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def test_unknown_api_path_is_404_not_found(client):
    envelope(client.get("/v1/no-such-thing"), 404, "not_found")


def test_unknown_path_outside_the_api_is_json_too(client):
    envelope(client.get("/nowhere"), 404, "not_found")


@pytest.mark.parametrize("path", ["/nowhere", "/v1/no-such-thing"])
def test_unknown_paths_are_json_in_debug_mode_too(client, settings, path):
    """``make run`` runs with DEBUG on, where Django answers an unknown path with its HTML debug
    page (listing the URL patterns) instead of ``handler404``."""
    settings.DEBUG = True
    envelope(client.get(path, HTTP_ACCEPT="application/json"), 404, "not_found")
    envelope(client.get(path), 404, "not_found")  # curl's */*
    browser = client.get("/nowhere", HTTP_ACCEPT="text/html")
    assert browser.status_code == 404 and browser["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("debug", [False, True])
def test_the_api_root_without_its_slash_is_404_not_a_redirect_or_500(client, settings, debug):
    """APPEND_SLASH sent ``/v1`` an HTML 301 to ``/v1/`` (a 404 there), and under DEBUG (make
    run) a POST or DELETE to it was a 500: Django refuses to redirect a method with a body.
    Every non-2xx answer is the envelope, and an unknown path is 404 whatever the method."""
    settings.DEBUG = debug
    for method in ("get", "post", "delete"):
        envelope(getattr(client, method)("/v1"), 404, "not_found")
    admin = client.get("/admin")  # the staff admin keeps Django's slash redirect
    assert admin.status_code == 301 and admin["Location"] == "/admin/"


@pytest.mark.parametrize("debug", [False, True])
def test_a_query_string_with_too_many_fields_is_400_in_debug_mode_too(client, settings, debug):
    """Past DATA_UPLOAD_MAX_NUMBER_FIELDS Django raises TooManyFieldsSent; under DEBUG (make
    run) its page for it read the query string again, failed the same way, and the answer was
    a 500. Every DRF view reads the query (content negotiation), so any path was one."""
    settings.DEBUG = debug
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    for path in ("/v1/health", "/v1/bots"):
        error = envelope(client.get(f"{path}?{query}"), 400, "invalid_request")
        assert error["message"] == "The request was rejected as unsafe."


def test_a_page_outside_the_api_that_finds_the_database_gone_is_a_503(client):
    """The staff admin's pages were a 500 while PostgreSQL was down; the API's a 503."""
    for accept, kind in (("text/html", "text/html"), ("application/json", "application/json")):
        response = client.get("/staff-test/database-gone", HTTP_ACCEPT=accept)
        assert response.status_code == 503 and response["Retry-After"] == "5"
        assert response["Content-Type"].startswith(kind)
        assert b"unavailable or too slow" in response.content
        assert b"SELECT" not in response.content and b"10.0.0.5" not in response.content


def test_wrong_method_on_an_api_view_is_405(client):
    response = client.post("/v1/health")
    envelope(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_bare_405_from_a_plain_django_view_is_wrapped(client):
    response = client.post("/v1/test/plain-405")
    envelope(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_an_error_put_in_the_envelope_keeps_every_header_but_the_bodys(client, settings):
    """Only Allow, Retry-After and WWW-Authenticate were kept: RateLimit-*, Vary, the CORS and
    security headers were dropped, and a page of an allowed origin could not read the error."""
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    response = client.get("/v1/test/plain-429", HTTP_ORIGIN="https://app.example.com")
    envelope(response, 429, "rate_limited")
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "retry-after" in response["Access-Control-Expose-Headers"].lower()
    assert "origin" in response["Vary"].lower()
    assert [response[h] for h in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                                  "RateLimit-Reset")] == ["7", "60", "0", "7"]  # fmt: skip
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.cookies["seen"].value == "1"
    # What described the text body does not describe the envelope.
    assert "Content-Disposition" not in response and "Content-Language" not in response
    assert response["Content-Length"] == str(len(response.content))

    # A real route whose errors are not JSON (the schema renders YAML): its 405.
    response = client.post("/v1/schema", HTTP_ORIGIN="https://app.example.com")
    envelope(response, 405, "method_not_allowed")
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "GET" in response["Allow"]


def test_malformed_json_is_400_invalid_request(client):
    response = client.post("/v1/test/echo", data="{not json", content_type="application/json")
    envelope(response, 400, "invalid_request")


@pytest.mark.parametrize("charset", ["latin-1", "utf-7", "cp1252", "utf-16"])
def test_a_json_body_is_read_as_utf_8_whatever_charset_it_declares(client, charset):
    """application/json has no charset parameter (RFC 8259 8.1: JSON is UTF-8). DRF decoded
    the body in the declared one: UTF-8 "café" sent as charset=latin-1 was stored "cafÃ©",
    and "+ADw-" as charset=utf-7 became "<" past anything that read the bytes."""
    body = '{"name": "café", "count": 1}'.encode()
    declared = f"application/json; charset={charset}"
    # generic(): post() would re-encode the bytes into the declared charset
    response = client.generic("POST", "/v1/test/echo", body, content_type=declared)
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "café"
    utf7 = b'{"name": "+ADw-", "count": 1}'
    response = client.generic("POST", "/v1/test/echo", utf7, content_type=declared)
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "+ADw-"  # text, not "<"


def test_a_json_body_that_is_not_utf_8_is_400(client):
    body = '{"name": "café", "count": 1}'.encode("latin-1")
    response = client.generic(
        "POST", "/v1/test/echo", body, content_type="application/json; charset=latin-1"
    )
    envelope(response, 400, "invalid_request")


def test_json_nested_past_the_parsers_recursion_limit_is_400_not_500(client):
    nested = '{"a": ' * 5000 + "1" + "}" * 5000
    response = client.post("/v1/test/echo", data=nested, content_type="application/json")
    error = envelope(response, 400, "invalid_request")
    assert "nested too deeply" in error["message"]


def test_validation_errors_name_each_field(client):
    response = client.post(
        "/v1/test/echo", data={"name": "far too long", "count": 0}, content_type="application/json"
    )
    error = envelope(response, 400, "validation_error")
    assert set(error["details"]) == {"name", "count"}
    assert all(isinstance(m, str) for msgs in error["details"].values() for m in msgs)


def test_unsupported_content_type_is_415(client):
    response = client.post("/v1/test/echo", data="name=x", content_type="text/plain")
    envelope(response, 415, "unsupported_media_type")


@pytest.mark.django_db
def test_body_over_the_limit_is_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"name": "x", "count": 1, "pad": "x" * 4096})
    response = client.post("/v1/test/echo", data=body, content_type="application/json")
    envelope(response, 413, "payload_too_large")


def test_domain_errors_keep_their_code_and_message(client):
    error = envelope(client.get("/v1/test/domain"), 404, "not_found")
    assert error["message"] == "Bot not found."
    envelope(client.get("/v1/test/domain?kind=quota"), 429, "quota_exceeded")


def test_private_view_without_credentials_is_401(client):
    response = client.get("/v1/test/private")
    envelope(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/v1/test/boom", "/v1/test/boom-drf"])
def test_unhandled_exception_is_500_without_internals(client, path):
    response = client.get(path)
    error = envelope(response, 500, "internal_error")
    text = response.content.decode()
    assert "SELECT" not in text
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert error["details"] == {}


@pytest.mark.django_db
def test_csrf_failure_is_403_in_the_envelope_for_api_clients():
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/admin/login/", {"username": "x", "password": "y"}, HTTP_ACCEPT="application/json"
    )
    envelope(response, 403, "permission_denied")


@pytest.mark.django_db
def test_csrf_failure_keeps_djangos_page_for_browsers():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x"}, HTTP_ACCEPT="text/html")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_client_request_id_is_echoed_when_sane(client):
    response = client.get("/v1/no-such-thing", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    assert response.json()["error"]["request_id"] == "abc-123"


@pytest.mark.parametrize("bad", ["has spaces", "x" * 300, "<script>", ""])
def test_insane_request_id_is_replaced(client, bad):
    response = client.get("/v1/no-such-thing", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32

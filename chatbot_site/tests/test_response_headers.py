# mypy: disable-error-code="no-untyped-def"
"""Headers the contract's users rely on, as served and as the schema declares them.

A create names what it created: ``Location`` on every ``201`` (bots, scopes, datasets, API
keys) and on a document's ``202`` (an upload or a URL), the path the object is read, changed or
deleted at — what an HTTP client expects of a ``201`` (RFC 9110 15.3.2) and what the schema
declares. The schema describes ``RateLimit-*`` as the token bucket counts them (it described
a window's). Through the API; nothing mocked."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from tests.world import build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def side():
    return build_tenant("acme")


@pytest.mark.parametrize(
    "path, body, route",
    [
        ("/v1/bots", {"name": "Located bot"}, "/v1/bots/"),
        ("/v1/scopes", {"name": "Located scope"}, "/v1/scopes/"),
        ("/v1/datasets", {"name": "Located dataset"}, "/v1/datasets/"),
        ("/v1/api-keys", {"name": "Located key", "role": "chat"}, "/v1/api-keys/"),
    ],
)
def test_a_201_names_the_object_it_created(side, path, body, route):
    client = side.client()
    created = client.post(path, body, format="json")
    assert created.status_code == 201, created.content
    assert created["Location"] == route + created.json()["id"]
    if route != "/v1/api-keys/":  # a key is changed and revoked there, not read (API.md)
        read = client.get(created["Location"])
        assert read.status_code == 200
        assert read.json()["id"] == created.json()["id"]


def test_a_document_queued_names_where_its_status_is_read(side):
    client = side.client()
    path = f"/v1/datasets/{side.dataset.pk}/documents"
    text = SimpleUploadedFile("notes.md", b"# Notes\n\nLocated text.", "text/markdown")
    queued = client.post(path, {"file": text}, format="multipart")
    assert queued.status_code == 202, queued.content
    assert queued["Location"] == f"/v1/documents/{queued.json()['id']}"
    assert client.get(queued["Location"]).json()["id"] == queued.json()["id"]
    # The same content again is the existing document (200), not a creation.
    again = SimpleUploadedFile("notes.md", b"# Notes\n\nLocated text.", "text/markdown")
    existing = client.post(path, {"file": again}, format="multipart")
    assert existing.status_code == 200
    assert "Location" not in existing
    # Records: a batch, each document in the body, none in a header.
    batch = client.post(path, {"records": [{"title": "R", "text": "Located."}]}, format="json")
    assert batch.status_code == 202
    assert "Location" not in batch


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_the_schema_declares_location(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                declared = response.get("headers", {})
                if code == "201":
                    assert declared["Location"]["required"], (method, path)
                elif code != "202" or operation["operationId"] != "documents_create":
                    assert "Location" not in declared, (method, path, code)
    created = schema["paths"]["/v1/datasets/{dataset_id}/documents"]["post"]["responses"]
    assert "Location" in created["202"]["headers"]


def test_the_schema_describes_the_rate_limit_headers_as_they_are(schema):
    headers = schema["components"]["headers"]
    # A token bucket (README, Rate limits): no window; Reset is one request's wait. The schema
    # said "Requests left in the current window." and "Seconds until the window is full again."
    assert "current window" not in headers["RateLimit-Remaining"]["description"]
    assert "token bucket" in headers["RateLimit-Remaining"]["description"]
    assert "full again" not in headers["RateLimit-Reset"]["description"]
    assert "equal to Retry-After" in headers["RateLimit-Reset"]["description"]

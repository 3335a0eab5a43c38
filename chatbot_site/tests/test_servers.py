"""Request bodies reach Django as sent when daphne serves: Twisted does not parse them first."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from knowledge.models import Document
from tests.processes import child_env, daphne_server
from tests.world import build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

BOUNDARY = "b0undary"


def post(url: str, key: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(  # noqa: S310 (our own server on loopback)
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def file_part(name: str, content: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_multipart_bodies_are_parsed_by_django_only(tmp_path):
    side = build_tenant("bodies")
    url_of = f"/v1/datasets/{side.dataset.pk}/documents"
    with daphne_server(child_env(), tmp_path / "daphne.log") as base:
        # A body Twisted's own form parser rejects used to get a bare 400 with no envelope
        # before Django saw it; now Django's parser answers in the contract's shape.
        status, headers, body = post(base + url_of, side.admin_key.plaintext, b"--b0undary--\r\n")
        assert status == 400, body
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] in {"validation_error", "invalid_request"}
        assert error["request_id"] == headers["X-Request-Id"]

        # A real upload still arrives whole.
        content = b"# Served upload\n\n" + b"A paragraph that arrives through daphne. " * 2000
        status, _, body = post(
            base + url_of, side.admin_key.plaintext, file_part("served.md", content)
        )
        assert status == 202, body
        document = json.loads(body)
        assert document["source"] == "served.md"
        assert document["status"] == "queued"

    stored = Document.all_tenants.get(pk=document["id"])
    assert stored.tenant_id == side.tenant.pk
    assert stored.dataset_id == side.dataset.pk

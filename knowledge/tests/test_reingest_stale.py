"""Documents remember the pipeline version that made their chunks."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.ingestion import PIPELINE_VERSION, document_ingest
from knowledge.intake import document_add_upload
from knowledge.models import Document
from tenants.services import Actor
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def ingested(side, name: str, text: str) -> Document:
    upload = SimpleUploadedFile(name, text.encode())
    document = document_add_upload(tenant=side.tenant, actor=Actor.system("tests"),
                                   dataset=side.dataset, upload=upload).document  # fmt: skip
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    return document


def test_a_run_records_the_pipeline_version_that_made_the_chunks_and_the_api_shows_it():
    side = build_tenant("acme")
    assert side.document.pipeline_version == 0  # what the migration gives existing rows
    document = ingested(side, "guide.md", "# Guide\n\nRefunds take five days.")
    assert PIPELINE_VERSION >= 1
    assert document.pipeline_version == PIPELINE_VERSION
    body = side.client().get(f"/v1/documents/{document.pk}").json()
    assert body["pipeline_version"] == PIPELINE_VERSION

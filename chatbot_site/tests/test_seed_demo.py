"""`make run`'s seed: the demo tenant, bot and dataset; a newer version of a demo file replaces the
older one; the printed key and question get a cited answer from the demo bot, offline."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from chatbot_site.management.commands import seed_demo
from conversations.guardrails import ScopeVerdict, out_of_scope, scope_topics
from knowledge.ingestion import document_ingest
from knowledge.models import Document
from knowledge.retrieval import embed_query
from tenants.models import ApiKey, AuditLog, Tenant

pytestmark = pytest.mark.django_db(transaction=True)

GUIDE = """# Guide

## Adding documents

To add documents to a dataset, upload a file, a URL or JSON records to
`POST /v1/datasets/{id}/documents`; each becomes a document that the worker parses, chunks
and embeds. {version}
"""


def seed(document) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--document", str(document), host="127.0.0.1", port=8000, stdout=out)
    return out.getvalue()


def test_seed_is_idempotent_replaces_old_versions_and_answers_its_curl(tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text(GUIDE.replace("{version}", "First version."))
    seed(guide)
    guide.write_text(GUIDE.replace("{version}", "Second version."))
    printed = seed(guide)

    documents = Document.objects.for_tenant(Document.all_tenants.get().tenant_id)
    (document,) = documents.filter(source="guide.md")
    assert document_ingest(document_id=document.pk) == "ready"

    key = re.search(r"Admin API key \(shown once\): (\S+)", printed).group(1)
    # The README's examples name these three: one line sets them all.
    exported = re.search(r"export CHATBOT_API_KEY=(\S+) BOT_ID=(\S+) DATASET_ID=(\S+)", printed)
    assert exported.group(1) == key
    assert exported.group(2) == str(document.dataset.bots.get().pk)
    assert exported.group(3) == str(document.dataset_id)
    body = json.loads(re.search(r"/v1/chat -d '(.+)'", printed).group(1))
    assert body["messages"][0]["content"] == seed_demo.DEMO_QUESTION
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    answer = client.post("/v1/chat", body, format="json").json()
    assert answer["refusal"] is None, answer
    assert answer["citations"] and answer["citations"][0]["source"] == "guide.md"
    assert "Second version" in answer["citations"][0]["snippet"]
    # Until its documents are ready the bot refuses the printed question: the seed prints how
    # to follow them (a newcomer on a busy machine got out_of_scope and nothing to look at).
    follow = re.search(r"\S+(/v1/datasets/\$DATASET_ID/documents)\b", printed).group(1)
    listed = client.get(follow.replace("$DATASET_ID", str(document.dataset_id))).json()
    assert [d["status"] for d in listed["data"]] == ["ready"]


def test_a_new_version_of_a_demo_file_is_searched_as_before_until_it_is_read(tmp_path):
    """After a pull that changed the README, `make run`'s seed added the new version and
    deleted the old one: until the worker had read the new one, the file was not searched and
    the printed question was refused ``out_of_scope``. Now the document takes the new content
    and its old chunks answer until the new run replaces them."""
    guide = tmp_path / "guide.md"
    guide.write_text(GUIDE.replace("{version}", "First version."))
    seed(guide)
    (first,) = Document.all_tenants.filter(source="guide.md")
    assert document_ingest(document_id=first.pk) == "ready"
    guide.write_text(GUIDE.replace("{version}", "Second version."))
    seed(guide)

    (document,) = Document.all_tenants.filter(source="guide.md")
    assert document.pk == first.pk and document.status == "queued"
    assert document.chunks.filter(text__contains="First version").exists()  # still searched
    assert document.file.read().decode().endswith("Second version.\n")
    assert document_ingest(document_id=document.pk) == "ready"
    assert not document.chunks.filter(text__contains="First version").exists()
    assert document.chunks.filter(text__contains="Second version").exists()


def test_a_seed_revokes_the_previous_runs_key_as_the_api_does(tmp_path):
    """The previous run's key was revoked by hand: its api_key.revoke entry had no changes,
    where every other revocation's names the key's prefix."""
    guide = tmp_path / "guide.md"
    guide.write_text(GUIDE.replace("{version}", "First version."))
    first = re.search(r"Admin API key \(shown once\): (\S+)", seed(guide)).group(1)
    seed(guide)

    tenant = Tenant.objects.get(slug="demo")
    old = ApiKey.objects.for_tenant(tenant).get(prefix=first[4:16])
    assert old.revoked_at is not None
    entry = AuditLog.objects.for_tenant(tenant).get(action="api_key.revoke")
    assert (entry.target_id, entry.changes) == (str(old.pk), {"prefix": old.prefix})


@pytest.mark.parametrize(
    "question",
    [
        "Which guardrails are there?",
        "What are the guardrails?",
        "How does authentication work?",
        "What security features does the service have?",
        "How do I stream an answer?",
    ],
)
def test_the_demo_scope_covers_what_its_documents_talk_about(question):
    # Topic similarity alone (no passage as evidence): the demo documents (README, benchmarks)
    # describe guardrails, security, authentication and streaming, so the scope names them.
    # "Which guardrails are there?" was 0.10 from the old scope's closest topic: out_of_scope.
    verdict = demo_scope_verdict(question)
    assert verdict.reason is None, verdict


@pytest.mark.parametrize(
    "question",
    [
        "What is a good recipe for banana bread?",
        "Who painted the Mona Lisa?",
        "How do I knit a scarf?",
    ],
)
def test_the_demo_scope_still_refuses_off_topic_questions_without_evidence(question):
    verdict = demo_scope_verdict(question)
    assert verdict.reason == "out_of_scope", verdict


def demo_scope_verdict(question: str) -> ScopeVerdict:
    """The demo scope's topic check alone (no passage as evidence)."""
    scope = seed_demo.DEMO_SCOPE
    vector, _ = embed_query(question)
    return out_of_scope(
        vector=vector,
        topics=scope_topics(scope["description"], scope["allowed_topics"]),
        evidence=0.0,
        tenant_id="demo-scope-test",
    )

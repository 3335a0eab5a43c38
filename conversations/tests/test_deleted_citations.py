"""A deleted document's text leaves the citations of stored messages: their ``snippet``,
``title`` and ``source`` become empty strings, their ids, ``page`` and ``score`` stay
(conversations migration 0004's triggers)."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.models import Message, MessageRole
from conversations.tests.chatkit import add_passages, ask, chat
from conversations.tests.factories import MessageFactory
from knowledge.models import Document
from knowledge.services import document_delete
from knowledge.tests.factories import DocumentFactory
from knowledge.tests.test_delete_races import contend
from tenants.services import Actor
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)

FORGOTTEN = {"title": "", "source": "", "snippet": ""}


def citation(document: Document, n: int, snippet: str) -> dict[str, Any]:
    return {"id": n, "document_id": str(document.pk), "chunk_id": f"00000000-0000-4000-8000-00000000000{n}",
            "dataset_id": str(document.dataset_id), "title": document.title,
            "source": document.source, "page": n, "snippet": snippet, "score": 0.5}  # fmt: skip


def answer(side: TenantWorld, *citations: dict[str, Any]) -> Any:
    return MessageFactory(tenant=side.tenant, conversation=side.conversation,
                          role=MessageRole.ASSISTANT, content="As cited [1] [2].",
                          citations=list(citations))  # fmt: skip


def citations_of(side: TenantWorld, message_id: Any) -> list[dict[str, Any]]:
    return Message.objects.for_tenant(side.tenant).get(pk=message_id).citations


def test_deleting_a_document_takes_its_text_out_of_the_answers_that_cited_it():
    """Seen against make run: an answer citing BENCHMARKS.md three times kept its three
    snippets (298-301 characters each) in GET /v1/conversations/{id} after the document's
    DELETE."""
    side = build_tenant("forgetful")
    library = add_passages(side)
    turn = chat(side.client(side.chat_key), **ask(side, "When do annual plans renew?"))
    assert turn.status_code == 200, turn.content
    body = turn.json()
    cited = body["citations"]
    assert cited and {c["document_id"] for c in cited} == {str(library.document.pk)}
    assert all(c["snippet"] and c["title"] == "Billing FAQ" for c in cited)

    client = side.client()
    assert client.delete(f"/v1/documents/{library.document.pk}").status_code == 204

    conversation = client.get(f"/v1/conversations/{body['session_id']}").json()
    stored = next(m for m in conversation["messages"] if m["id"] == body["message_id"])
    assert stored["content"] == body["output"]  # what was said stays
    assert stored["citations"] == [{**c, **FORGOTTEN} for c in cited]


def test_deleting_a_dataset_takes_its_documents_text_out_and_leaves_other_citations_alone():
    side, other = build_tenant("forgets-datasets"), build_tenant("remembers")
    doomed = [DocumentFactory(tenant=side.tenant, dataset=side.dataset, title=f"Doc {n}",
                              source=f"doc{n}.md") for n in range(2)]  # fmt: skip
    kept = DocumentFactory(tenant=side.tenant, title="Kept", source="kept.md")
    theirs = DocumentFactory(tenant=other.tenant, title="Theirs", source="theirs.md")
    both = answer(side, citation(doomed[0], 1, "first secret"), citation(kept, 2, "kept text"))
    second = answer(side, citation(doomed[1], 1, "second secret"))
    unrelated = answer(other, citation(theirs, 1, "their text"))

    response = side.client().delete(f"/v1/datasets/{side.dataset.pk}")
    assert response.status_code == 204

    assert citations_of(side, both.pk) == [
        {**citation(doomed[0], 1, "first secret"), **FORGOTTEN},
        citation(kept, 2, "kept text"),
    ]
    assert citations_of(side, second.pk) == [{**citation(doomed[1], 1, ""), **FORGOTTEN}]
    assert citations_of(other, unrelated.pk) == [citation(theirs, 1, "their text")]


def test_an_answer_stored_after_its_cited_document_was_deleted_keeps_none_of_its_text():
    """A turn retrieves, the document is deleted while the model answers, the turn stores its
    answer: its citation of the document was stored with the text."""
    side = build_tenant("late-answer")
    gone = DocumentFactory(tenant=side.tenant, dataset=side.dataset, title="Gone", source="g.md")
    cited = citation(gone, 1, "text of a deleted document")
    document_delete(tenant=side.tenant, actor=Actor.system("tests"), document=gone)
    message = answer(side, cited, citation(side.document, 2, "still here"))
    assert citations_of(side, message.pk) == [
        {**cited, **FORGOTTEN},
        citation(side.document, 2, "still here"),
    ]


def test_an_answer_stored_while_its_cited_document_is_being_deleted_keeps_none_of_its_text():
    """The deletion has cleaned the messages it sees but not committed; an answer citing the
    document is stored meanwhile: it waits for the deletion and is stored without the text
    (before, it saw the document still there and kept it, and the deletion never saw it)."""
    side = build_tenant("racing-answer")
    gone = DocumentFactory(tenant=side.tenant, dataset=side.dataset, title="Gone", source="g.md")
    cited = citation(gone, 1, "text of a deleted document")
    stored: list[Message] = []

    errors = contend(
        lambda: document_delete(tenant=side.tenant, actor=Actor.system("tests"), document=gone),
        lambda: stored.append(answer(side, cited)),
    )
    assert errors == []
    assert citations_of(side, stored[0].pk) == [{**cited, **FORGOTTEN}]


def test_a_document_deleted_while_an_answer_citing_it_is_being_stored_is_taken_out_of_it():
    side = build_tenant("racing-delete")
    gone = DocumentFactory(tenant=side.tenant, dataset=side.dataset, title="Gone", source="g.md")
    cited, gone_id = citation(gone, 1, "text of a deleted document"), gone.pk
    stored: list[Message] = []

    errors = contend(
        lambda: stored.append(answer(side, cited)),
        lambda: document_delete(tenant=side.tenant, actor=Actor.system("tests"), document=gone),
    )
    assert errors == []
    assert not Document.all_tenants.filter(pk=gone_id).exists()
    assert citations_of(side, stored[0].pk) == [{**cited, **FORGOTTEN}]

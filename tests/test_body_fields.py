"""Three gaps between API.md and what the request bodies took: ``"stream": false`` streamed when
the Accept header named ``text/event-stream``; a record without ``title`` (which API.md writes as
required: ``{"title", "text", "metadata"?, ...}``) was taken; and an unknown key inside a nested
object (a record, a message) was dropped without a word, though the body's own unknown fields
were refused (``chatbot_site.strict``)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from conversations.tests.chatkit import add_passages, ask, openai_llm
from knowledge.models import Document
from tests.world import TenantWorld, build_tenant

SSE = "text/event-stream"


async def _read(pieces: Any) -> bytes:
    return b"".join([piece async for piece in pieces])


def chat(world: TenantWorld, body: dict[str, Any], accept: str | None = None) -> Any:
    client = world.client(world.chat_key)
    if accept is None:
        return client.post("/v1/chat", body, format="json")
    return client.post("/v1/chat", body, format="json", HTTP_ACCEPT=accept)


def content_type(response: Any) -> str:
    """The response's media type, its stream read to the end (the turn is stored at its end)."""
    if response.streaming:
        async_to_sync(_read)(response.streaming_content)
    return str(response["Content-Type"]).split(";")[0]


def records(world: TenantWorld, *items: dict[str, Any]) -> Any:
    path = f"/v1/datasets/{world.dataset.pk}/documents"
    return world.client().post(path, {"records": list(items)}, format="json")


def details(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    return dict(error["details"])


# --- 1. an explicit "stream" wins over the Accept header --------------------------------------


@pytest.mark.django_db(transaction=True)  # the chat view reads the key on the pool's threads
@pytest.mark.parametrize(
    ("stream", "accept", "expected"),
    [
        (False, SSE, "application/json"),  # streamed before
        (False, f"application/json, {SSE}", "application/json"),  # streamed before
        (True, "application/json", SSE),
        (None, SSE, SSE),  # no "stream": the header decides
        (None, None, "application/json"),
        (True, None, SSE),
    ],
)
def test_an_explicit_stream_field_wins_over_the_accept_header(stream, accept, expected):
    world = build_tenant("acme")
    add_passages(world)
    body = ask(world, "When do annual plans renew?")
    if stream is not None:
        body["stream"] = stream
    with openai_llm():
        response = chat(world, body, accept)
        assert response.status_code == 200
        assert content_type(response) == expected


# --- 2. a record's title is required ----------------------------------------------------------


@pytest.mark.django_db
def test_a_record_without_a_title_is_a_field_error_naming_it():
    world = build_tenant("acme")
    before = Document.all_tenants.count()
    answer = details(records(world, {"title": "Refunds", "text": "Five days."}, {"text": "x"}))
    assert list(answer) == ["records.1.title"], answer
    assert Document.all_tenants.count() == before  # the batch is refused whole


@pytest.mark.django_db
def test_a_record_with_a_blank_title_is_taken():
    world = build_tenant("acme")
    response = records(world, {"title": "", "text": "Refunds take five days."})
    assert response.status_code == 202, response.content[:400]
    assert response.json()["data"][0]["title"] == ""


# --- 3. unknown keys of nested objects are refused --------------------------------------------


@pytest.mark.django_db
def test_an_unknown_key_of_a_record_is_a_field_error_naming_it():
    """``"titel"`` was dropped: the document was stored untitled, answered 202."""
    world = build_tenant("acme")
    answer = details(
        records(
            world,
            {"title": "Refunds", "text": "Five days."},
            {"title": "Plans", "titel": "Plans", "text": "Yearly.", "tag": ["faq"]},
        )
    )
    assert sorted(answer) == ["records.1.tag", "records.1.titel"], answer
    assert answer["records.1.titel"][0].startswith("Unknown field; the fields are: title, text")
    assert not Document.all_tenants.filter(tenant=world.tenant, title="Plans").exists()


@pytest.mark.django_db(transaction=True)  # the chat view reads the key on the pool's threads
def test_an_unknown_key_of_a_message_is_a_field_error_naming_it():
    """``{"role": "user", "contnet": ...}`` was read without it: "content: required" at best,
    a ``"name"`` beside ``content`` silently dropped."""
    world = build_tenant("acme")
    body = ask(world, "When do annual plans renew?")
    body["messages"][0]["name"] = "alice"
    answer = details(chat(world, body))
    assert list(answer) == ["messages.0.name"], answer
    assert answer["messages.0.name"][0].startswith("Unknown field; the fields are: role, content")


@pytest.mark.django_db(transaction=True)
def test_messages_read_from_a_conversation_may_be_sent_back():
    """A conversation's messages (GET /v1/conversations/{id}) sent back as a new chat's context,
    read-only fields and all, are taken: the round trip the top-level bodies allow too."""
    world = build_tenant("acme")
    add_passages(world)
    client = world.client(world.chat_key)
    with openai_llm() as fake:
        fake.chat_reply = "Plans renew every year [1]."
        first = chat(world, ask(world, "When do annual plans renew?"))
        assert first.status_code == 200, first.content[:400]
        read = client.get(f"/v1/conversations/{first.json()['session_id']}")
        history = read.json()["messages"]
        assert {"id", "created_at", "citations", "usage"} <= set(history[-1])
        again = {
            "bot_id": str(world.bot.pk),
            "messages": [*history, *ask(world, "And monthly?")["messages"]],
        }
        response = chat(world, again)
        assert response.status_code == 200, response.content[:400]

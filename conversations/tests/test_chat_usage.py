"""Every token a chat turn makes the service embed is the tenant's usage: the question's, and
the scope's topics' when the turn is the one that embeds them (they are kept per process and
tenant after that). The topics were embedded for the blocked-topic and out-of-scope checks
and counted nowhere: not in ``/v1/usage``, not against the quota."""

from __future__ import annotations

import pytest

from conversations.guardrails import scope_topics
from conversations.tests.chatkit import add_passages, ask, chat
from knowledge.embeddings import get_embedder
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def key_usage(side: TenantWorld) -> dict:
    rows = side.client().get("/v1/usage", {"group_by": "api_key"}).json()["data"]
    (row,) = [r for r in rows if r["api_key_id"] == str(side.chat_key.pk)]
    return row


def test_the_turn_that_embeds_a_scopes_topics_is_billed_for_them():
    side = build_tenant("alpha")
    scope = side.scope
    scope.blocked_topics = ["competitor pricing", "legal advice"]
    scope.save(update_fields=["blocked_topics"])
    add_passages(side)
    before = key_usage(side)["embedding_tokens"]
    question = "When do annual plans renew?"

    first = chat(side.client(side.chat_key), **ask(side, question))
    assert first.status_code == 200, first.content
    assert first.json()["refusal"] is None

    count = get_embedder().count_tokens
    topics = [*scope.blocked_topics, *scope_topics(scope.description, scope.allowed_topics)]
    expected = count(question) + sum(count(topic) for topic in topics)
    assert key_usage(side)["embedding_tokens"] == before + expected

    # The question's vector and the topics' are kept now: the same turn again embeds nothing.
    again = chat(side.client(side.chat_key), **ask(side, question))
    assert again.status_code == 200, again.content
    assert key_usage(side)["embedding_tokens"] == before + expected


def test_a_document_being_embedded_holds_its_tokens_against_chats_and_other_documents(
    redis_client,
):
    """A document's tokens are known before it is embedded and held until its run ends: chats
    and other documents cannot spend them meanwhile (and it is not embedded past the quota)."""
    from chatbot_site.errors import QuotaExceeded
    from tenants.usage import quota_release, quota_reserve, tokens_used_this_month

    side = build_tenant("alpha")
    add_passages(side)
    used = tokens_used_this_month(tenant=side.tenant)
    side.tenant.monthly_token_quota = used + 1_000
    side.tenant.save(update_fields=["monthly_token_quota"])
    assert quota_reserve(tenant=side.tenant, holder="document:1", tokens=1_000, hold_seconds=60)

    refused = chat(side.client(side.chat_key), **ask(side, "When do annual plans renew?"))
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["details"]["held"] == 1_000
    # What holds it may be a document: the message says so (it named answers only).
    assert "documents" in refused.json()["error"]["message"]
    with pytest.raises(QuotaExceeded) as other:
        quota_reserve(tenant=side.tenant, holder="document:2", tokens=1, hold_seconds=60)
    assert (other.value.details["left"], other.value.details["needed"]) == (0, 1)

    quota_release(tenant_id=side.tenant.pk, holder="document:1")
    answered = chat(side.client(side.chat_key), **ask(side, "When do annual plans renew?"))
    assert answered.status_code == 200, answered.content


def test_a_turn_whose_scope_check_fails_upstream_is_billed_for_the_question_it_embedded(
    embedding_provider,
):
    """The question is embedded, then the scope's topics, and the provider refuses those: the
    JSON turn is a 502 and stores nothing, but the question's tokens were billed by the
    provider. They were counted nowhere (the turn's usage was recorded only when it was
    stored)."""
    side = build_tenant("alpha")
    side.scope.blocked_topics = ["competitor pricing"]
    side.scope.save(update_fields=["blocked_topics"])
    add_passages(side)
    before = key_usage(side)

    def refuse_the_next_request() -> None:  # the question's request is answered, then a 400
        embedding_provider.fail_with = [400]
        embedding_provider.on_embeddings = None

    embedding_provider.on_embeddings = refuse_the_next_request
    question = "When do annual plans renew?"
    failed = chat(side.client(side.chat_key), **ask(side, question))
    assert failed.status_code == 502, failed.content
    assert failed.json()["error"]["code"] == "upstream_error"
    asked = [r["body"]["input"] for r in embedding_provider.requests]
    assert asked[-2:] == [[question], [*side.scope.blocked_topics]]  # the question's went through

    after = key_usage(side)
    assert after["embedding_tokens"] == before["embedding_tokens"] + len(question.split())
    assert after["requests"] == before["requests"] + 1
    assert after["prompt_tokens"] == before["prompt_tokens"]  # no answer: no LLM tokens

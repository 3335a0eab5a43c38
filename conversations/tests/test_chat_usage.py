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

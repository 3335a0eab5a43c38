"""``POST /v1/retrieve``: the bot's hits through the API, with real query embeddings."""

from __future__ import annotations

import logging
import time

import pytest
from drf_spectacular.generators import SchemaGenerator

from chatbot_site.tests.test_schema import assert_conforms
from conversations.tests.chatkit import add_passages
from knowledge.models import Chunk
from knowledge.tests.factories import ChunkFactory, DocumentFactory
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha():
    return build_tenant("alpha")


def retrieve(world, key=None, **body):
    return world.client(key or world.chat_key).post("/v1/retrieve", body, format="json")


def key_embedding_tokens(world) -> int:
    usage = world.client(world.admin_key).get("/v1/usage?group_by=api_key").json()
    rows = [r for r in usage["data"] if r["api_key_id"] == str(world.chat_key.pk)]
    return rows[0]["embedding_tokens"] if rows else 0


def test_hits_best_first_in_the_contract_shape(alpha):
    library = add_passages(alpha)
    before = key_embedding_tokens(alpha)
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?", top_k=2)
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body["data"]) == 2
    top = body["data"][0]
    assert top["chunk_id"] == str(library.chunks[1].pk)  # the refunds passage
    for field in ("document_id", "chunk_id", "dataset_id", "title", "source", "page", "text"):
        assert field in top
    assert 0 < top["score"] <= 1 and top["scores"]["text"] > 0
    assert body["data"][0]["scores"]["fused"] >= body["data"][1]["scores"]["fused"]
    assert body["usage"]["embedding_tokens"] > 0
    assert response["RateLimit-Limit"]
    # The query embedding counts in the key's usage.
    assert key_embedding_tokens(alpha) - before == body["usage"]["embedding_tokens"]


def test_top_k_defaults_to_the_bots_and_is_bounded(alpha):
    add_passages(alpha)
    alpha.bot.top_k = 1
    alpha.bot.save()
    body = retrieve(alpha, bot_id=str(alpha.bot.pk), query="refunds").json()
    assert len(body["data"]) == 1
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="refunds", top_k=101)
    assert response.status_code == 400 and "top_k" in response.json()["error"]["details"]


def test_filter_tags_and_other_tenants(alpha):
    add_passages(alpha)
    tagged_doc = DocumentFactory(tenant=alpha.tenant, dataset=alpha.dataset, tags=["pricing"])
    tagged = ChunkFactory(
        tenant=alpha.tenant,
        document=tagged_doc,
        tags=["pricing"],
        text="The pro plan costs ten euros.",
    )
    body = retrieve(
        alpha,
        bot_id=str(alpha.bot.pk),
        query="price of the pro plan",
        filters={"tags": ["pricing"]},
    ).json()
    assert [h["chunk_id"] for h in body["data"]] == [str(tagged.pk)]
    beta = build_tenant("beta")
    response = retrieve(beta, bot_id=str(alpha.bot.pk), query="refunds")
    assert response.status_code == 404


def test_a_tag_filter_in_nfd_finds_chunks_tagged_in_nfc(alpha):
    add_passages(alpha)
    document = DocumentFactory(tenant=alpha.tenant, dataset=alpha.dataset, tags=["caf\u00e9"])
    tagged = ChunkFactory(tenant=alpha.tenant, document=document, tags=["caf\u00e9"],
                          text="The cafe opens at nine.")  # fmt: skip
    body = retrieve(alpha, bot_id=str(alpha.bot.pk), query="When does the cafe open?",
                    filters={"tags": ["cafe\u0301"]}).json()  # fmt: skip
    assert [h["chunk_id"] for h in body["data"]] == [str(tagged.pk)]


def test_mode_selects_a_single_leg(alpha):
    add_passages(alpha)
    body = retrieve(alpha, bot_id=str(alpha.bot.pk), query="zzzz qqqq", mode="text").json()
    assert body["data"] == []
    body = retrieve(alpha, bot_id=str(alpha.bot.pk), query="zzzz qqqq", mode="vector").json()
    assert body["data"]


def embedding_calls(fake) -> int:
    return sum(1 for r in fake.requests if r["path"].endswith("/embeddings"))


def test_a_tenants_repeated_query_is_embedded_once_and_billed_once(
    alpha, embedding_provider, settings
):
    add_passages(alpha)
    beta = build_tenant("beta")
    add_passages(beta)
    calls = embedding_calls(embedding_provider)  # the passages'
    query = {"query": "How are refunds paid?", "top_k": 2}
    first = retrieve(alpha, bot_id=str(alpha.bot.pk), **query).json()
    again = retrieve(alpha, bot_id=str(alpha.bot.pk), **query).json()
    assert embedding_calls(embedding_provider) == calls + 1
    assert first["usage"]["embedding_tokens"] > 0 and again["usage"]["embedding_tokens"] == 0
    assert [h["chunk_id"] for h in again["data"]] == [h["chunk_id"] for h in first["data"]]
    assert [h["score"] for h in again["data"]] == [h["score"] for h in first["data"]]

    # Another tenant asking the same is embedded afresh: no tenant can time what others ask.
    other = retrieve(beta, bot_id=str(beta.bot.pk), **query).json()
    assert embedding_calls(embedding_provider) == calls + 2
    assert other["usage"]["embedding_tokens"] == first["usage"]["embedding_tokens"]

    settings.EMBEDDING_QUERY_CACHE_SIZE = 0  # off: every query is embedded
    retrieve(alpha, bot_id=str(alpha.bot.pk), **query)
    assert embedding_calls(embedding_provider) == calls + 3


def test_a_provider_answer_that_is_not_embeddings_is_a_502_upstream_error(
    alpha, embedding_provider, settings
):
    add_passages(alpha)
    settings.EMBEDDING_RETRY_BASE_SECONDS = 0.01
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    embedding_provider.embedding_content_type = "text/html"
    embedding_provider.embedding_answers = [lambda ok: html] * 5
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?")
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "upstream_error"
    assert response.json()["error"]["message"] == (
        "The embedding provider failed: The embedding provider sent an invalid answer."
    )
    assert_conforms(SchemaGenerator().get_schema(public=True), "post", "/v1/retrieve", response)


def test_a_zero_vector_stored_earlier_scores_no_relevance_instead_of_failing(alpha):
    """A zero vector (a provider's, before answers were checked) has a NaN cosine similarity
    to every question: it made every retrieval over its dataset a 500."""
    library = add_passages(alpha)
    zero = [0.0] * len(library.chunks[0].embedding)
    Chunk.objects.for_tenant(alpha.tenant).filter(pk=library.chunks[1].pk).update(embedding=zero)
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?", top_k=3)
    assert response.status_code == 200, response.content
    [hit] = [h for h in response.json()["data"] if h["chunk_id"] == str(library.chunks[1].pk)]
    assert hit["score"] == 0 and hit["scores"]["vector"] == 0


@pytest.mark.parametrize("reported", [-1_000_000, 10**12])
def test_a_providers_absurd_token_count_is_not_what_the_tenant_is_billed(
    alpha, embedding_provider, reported
):
    add_passages(alpha)
    before = key_embedding_tokens(alpha)
    embedding_provider.embedding_answers = [
        lambda ok: {**ok, "usage": {"prompt_tokens": reported, "total_tokens": reported}}
    ]
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?")
    assert response.status_code == 200, response.content
    billed = response.json()["usage"]["embedding_tokens"]
    assert 0 < billed < 50  # our estimate of five words
    assert key_embedding_tokens(alpha) - before == billed


def test_a_provider_that_trickles_its_answer_is_cut_at_the_querys_budget(
    alpha, embedding_provider, settings
):
    """Each piece within the read timeout, the answer 4 s long: /v1/retrieve waited for all of
    it (30 s for 100 pieces 0.5 s apart), past EMBEDDING_QUERY_TIMEOUT_SECONDS."""
    add_passages(alpha)
    settings.EMBEDDING_QUERY_TIMEOUT_SECONDS = 1
    embedding_provider.embedding_pieces = 100
    embedding_provider.embedding_piece_delay = 0.1  # 10 s of answer
    started = time.monotonic()
    response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?")
    assert time.monotonic() - started < 5  # about 1 s; wide for a loaded machine
    assert response.status_code == 502, response.content
    assert response.json()["error"]["message"] == (
        "The embedding provider failed: The embedding provider did not answer in time."
    )


def test_an_upstream_failure_is_one_error_line_with_its_cause(
    alpha, embedding_provider, settings, caplog
):
    """Django logged every 5xx again on django.request ("Bad Gateway: /v1/retrieve", ERROR,
    without the cause): two ERROR lines per failure, one of them saying nothing."""
    add_passages(alpha)
    settings.EMBEDDING_RETRY_BASE_SECONDS = 0.01
    embedding_provider.fail_with = [503] * 5
    with caplog.at_level(logging.INFO):
        response = retrieve(alpha, bot_id=str(alpha.bot.pk), query="How are refunds paid?")
    assert response.status_code == 502, response.content
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.msg["event"] for r in errors if isinstance(r.msg, dict)] == ["request_failed"]
    assert len(errors) == 1
    assert errors[0].msg["code"] == "upstream_error"
    assert errors[0].msg["cause"] == "EmbeddingError"


def test_past_the_monthly_quota_a_retrieval_is_refused_before_its_query_is_embedded(
    alpha, embedding_provider
):
    """A retrieval embeds its query (tokens, counted in usage), but never checked the quota: a
    tenant past it went on spending embedding tokens through /v1/retrieve. Refused as chat is."""
    from tenants.usage import tokens_used_this_month

    add_passages(alpha)
    query = {"bot_id": str(alpha.bot.pk), "query": "How are refunds paid?"}
    alpha.tenant.monthly_token_quota = tokens_used_this_month(tenant=alpha.tenant) + 1
    alpha.tenant.save(update_fields=["monthly_token_quota"])
    first = retrieve(alpha, **query)  # one token left: admitted, as a chat turn is
    assert first.status_code == 200, first.content
    spent = first.json()["usage"]["embedding_tokens"]
    assert spent > 1 and key_embedding_tokens(alpha) == spent  # counted: the quota is used up
    calls = embedding_calls(embedding_provider)

    refused = retrieve(alpha, **{**query, "query": "When do annual plans renew?"})
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert int(refused["Retry-After"]) > 0 and refused["RateLimit-Remaining"] == "0"
    assert embedding_calls(embedding_provider) == calls  # nothing embedded, nothing spent
    assert key_embedding_tokens(alpha) == spent
    assert_conforms(SchemaGenerator().get_schema(public=True), "post", "/v1/retrieve", refused)

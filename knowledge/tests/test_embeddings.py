"""Both embedding backends, the OpenAI one over real HTTP against the loopback fake provider."""

from __future__ import annotations

import base64
import json
import logging
import math
import time

import numpy as np
import pytest

from knowledge.embeddings import EmbeddingError
from knowledge.embeddings.local import LocalEmbedder
from knowledge.embeddings.openai import OpenAIEmbedder
from tests.fake_openai import fake_openai


@pytest.fixture
def provider(settings):
    with fake_openai() as fake:
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_API_KEY = "sk-test-not-a-real-key-000000"
        settings.EMBEDDING_MODEL = "text-embedding-3-small"
        settings.EMBEDDING_RETRY_BASE_SECONDS = 0.01
        yield fake


def test_local_embeddings_are_normalised_and_meaningful():
    embedder = LocalEmbedder()
    rotate, revoke, weather = embedder.embed(
        [
            "How do I rotate an API key?",
            "Revoke the old key and issue a new one.",
            "It is sunny in Lisbon today.",
        ]
    )
    assert len(rotate) == 384
    assert math.isclose(sum(x * x for x in rotate), 1.0, rel_tol=1e-4)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(rotate, revoke) > cos(rotate, weather) + 0.2


def test_local_embedding_is_deterministic_and_batch_independent():
    embedder = LocalEmbedder()
    alone = embedder.embed(["same text"])[0]
    batched = embedder.embed(["other", "same text", "more"])[1]
    assert max(abs(a - b) for a, b in zip(alone, batched, strict=True)) < 1e-5


def test_local_embeddings_come_back_in_the_callers_order_whatever_their_lengths():
    # Batches are formed from texts of similar length: 20 texts, longest first, over 6 calls.
    texts = [" ".join(["word"] * n) + f" number {n}" for n in range(40, 0, -2)]
    embedder = LocalEmbedder()
    together = embedder.embed(texts)
    for text, vector in zip(texts, together, strict=True):
        alone = embedder.embed([text])[0]
        assert max(abs(a - b) for a, b in zip(alone, vector, strict=True)) < 1e-5, text


def test_local_model_calls_stay_within_the_token_budget():
    from knowledge.embeddings.local import TOKEN_BUDGET, _batches

    lengths = [300, 5, 5, 40, 5, 120, 64, 64, 64, 64, 7]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    calls = list(_batches(order, lengths))
    assert [i for call in calls for i in call] == order  # every text once, in length order
    for call in calls:
        padded = len(call) * max(lengths[i] for i in call)
        assert padded <= TOKEN_BUDGET or len(call) == 1, call
    assert calls[0] == [1, 2, 4, 10, 3]  # short texts share a call ...
    assert calls[-1] == [0] and [5] in calls  # ... long ones run alone
    assert [6, 7, 8, 9] in calls


@pytest.mark.parametrize(
    "text",
    ["ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรค", "ひらがなだけのぶんしょう", "🙂" * 50, "x" * 150],
)
def test_a_word_the_model_reads_as_unknown_counts_by_its_bytes(text):
    """One [UNK] to the model, many tokens to an LLM's byte-level BPE: chunk sizes and prompt
    budgets need the second."""
    embedder = LocalEmbedder()
    assert embedder.count_tokens(text) == -(-len(text.encode()) // 4)
    assert embedder.count_tokens(f"Hello {text} world") == embedder.count_tokens(text) + 2


def test_known_words_count_as_the_model_reads_them():
    embedder = LocalEmbedder()
    assert embedder.count_tokens("Rotate keys every ninety days.") == 6


def test_openai_backend_batches_and_honours_dimensions(provider):
    embedder = OpenAIEmbedder()
    vectors = embedder.embed([f"text {n}" for n in range(300)])
    assert len(vectors) == 300 and all(len(v) == 384 for v in vectors)
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)
    bodies = [r["body"] for r in provider.requests]
    assert [len(b["input"]) for b in bodies] == [256, 44]  # within the per-request input limit
    assert all(b["dimensions"] == 384 and b["model"] == "text-embedding-3-small" for b in bodies)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_provider_errors_are_retried(provider, status):
    provider.fail_with = [status, status]
    vectors = OpenAIEmbedder().embed(["retry me"])
    assert len(vectors) == 1
    assert len(provider.requests) == 3


def test_a_rate_limited_provider_is_asked_again_no_sooner_than_it_said(provider):
    """Retry-After was ignored: the retries came after the backoff's 10-40 ms (here)."""
    provider.fail_with, provider.fail_headers = [429], {"Retry-After": "1"}
    started = time.monotonic()
    assert len(OpenAIEmbedder().embed(["wait for me"])) == 1
    assert len(provider.requests) == 2 and time.monotonic() - started >= 1.0


def test_a_long_retry_after_fails_at_once_for_the_task_to_come_back_then(provider):
    provider.fail_with, provider.fail_headers = [429] * 5, {"Retry-After": "120"}
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(["later"])
    assert (excinfo.value.transient, excinfo.value.retry_after) == (True, 120.0)
    assert len(provider.requests) == 1  # not five requests into a rate limit


@pytest.mark.django_db
def test_the_ingestion_retry_waits_what_the_provider_asked(remote_embeddings):
    from knowledge.ingestion import TransientIngestError, document_ingest
    from tests.world import build_tenant

    document = _upload(build_tenant("acme"))
    remote_embeddings.fail_with, remote_embeddings.fail_headers = [429], {"Retry-After": "90"}
    with pytest.raises(TransientIngestError) as failed:
        document_ingest(document_id=document.pk)
    assert failed.value.retry_after == 90.0


def test_inputs_the_provider_could_refuse_for_length_are_cut_and_batched_by_bytes(provider):
    # 150 "words" of 120 letters: WordPiece reads each as one [UNK], a byte-level BPE needs
    # thousands, and so does our count; 18 kB of text per input.
    giant = " ".join(["x" * 119 + chr(0x3B1 + n % 20) for n in range(150)])
    embedder = OpenAIEmbedder()
    assert embedder.count_tokens(giant) >= len(giant.encode()) // 4
    vectors = embedder.embed([giant] * 120 + ["short"])
    assert len(vectors) == 121
    sent = [text for request in provider.requests for text in request["body"]["input"]]
    assert sent[-1] == "short" and all(len(t.encode()) <= 8000 for t in sent)
    # Batched by the byte floor (120 x 2,000 > 200,000: two requests), not by WordPiece tokens
    # (120 x ~150 would fit one).
    per_request = [sum(len(t.encode()) // 4 for t in r["body"]["input"]) for r in provider.requests]
    assert len(provider.requests) == 2 and max(per_request) <= 200_000


def test_reported_tokens_are_the_providers_count_not_our_estimate(provider, settings):
    from knowledge.embeddings import get_embedder
    from knowledge.retrieval import embed_query

    # The fake provider bills one token per word; the local WordPiece tokenizer splits
    # punctuation and long words, so the two counts differ and show which one is reported.
    query = "Rotate my key, please: unbelievably quickly!"
    texts = [f"text number {n}, here" for n in range(300)]  # two requests (256 inputs each)
    vectors, tokens = OpenAIEmbedder().embed_counted(texts)
    assert len(vectors) == 300 and tokens == 300 * 4
    settings.EMBEDDING_BACKEND = "openai"
    get_embedder.cache_clear()
    try:
        vector, billed = embed_query(query)
    finally:
        get_embedder.cache_clear()
    assert len(vector) == 384
    assert billed == len(query.split()) == 6
    assert LocalEmbedder().count_tokens(query) != billed


@pytest.mark.parametrize("reported", [-1_000_000, 10**12, True, "12", 12.0, [12]], ids=repr)
def test_a_token_count_no_provider_could_mean_is_replaced_by_our_estimate(
    provider, reported, caplog
):
    """The count is added to the tenant's usage and quota: -1,000,000 made the totals negative,
    10**12 locked the tenant out for the month."""
    texts = ["Rotate my key, please", "x" * 400]
    embedder = OpenAIEmbedder()
    estimate = sum(embedder._cost(text) for text in texts)
    provider.embedding_answers = [lambda ok: {**ok, "usage": {"prompt_tokens": reported}}]
    with caplog.at_level(logging.WARNING, logger="knowledge.embeddings.openai"):
        assert embedder.embed_counted(texts)[1] == estimate
    logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)
              and r.msg.get("event") == "embedding_usage_implausible"]  # fmt: skip
    assert [line["value"] for line in logged] == [repr(reported)]
    provider.embedding_answers = [lambda ok: {k: v for k, v in ok.items() if k != "usage"}]
    assert embedder.embed_counted(texts)[1] == estimate  # none sent: our estimate, silently


def test_a_plausible_token_count_is_the_providers_even_far_from_our_estimate(provider):
    texts = ["Rotate my key, please", "x" * 400]
    embedder = OpenAIEmbedder()
    estimate = sum(embedder._cost(text) for text in texts)
    for reported in (0, 1, 4 * estimate + 100):
        provider.embedding_answers = [lambda ok, n=reported: {**ok, "usage": {"prompt_tokens": n}}]
        assert embedder.embed_counted(texts)[1] == reported


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_permanent_provider_errors_are_not_retried(provider, status):
    provider.fail_with = [status]
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(["no"])
    assert excinfo.value.transient is False
    assert excinfo.value.code == "embedding_rejected"
    assert len(provider.requests) == 1


def test_a_provider_that_keeps_failing_is_a_transient_error_for_the_task_to_retry(provider):
    provider.fail_with = [503] * 10
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(["later"])
    assert excinfo.value.transient is True
    assert len(provider.requests) == 5


def _each_vector(value):
    """An answer whose every embedding is ``value`` (a function of the proper vector)."""
    return lambda ok: {
        **ok,
        "data": [{**d, "embedding": value(d["embedding"])} for d in ok["data"]],
    }


def _first_vector(value):
    return lambda ok: {**ok, "data": [{**ok["data"][0], "embedding": value}, *ok["data"][1:]]}


def _indexes(indexes):
    return lambda ok: {
        **ok,
        "data": [{**d, "index": i} for d, i in zip(ok["data"], indexes, strict=True)],
    }


BROKEN_ANSWERS = {
    "truncated JSON": lambda ok: json.dumps(ok).encode()[:60],
    "an HTML page": lambda ok: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "no embeddings": lambda ok: {**ok, "data": []},
    "data null": lambda ok: {**ok, "data": None},
    "data an object": lambda ok: {**ok, "data": {}},
    "data a string": lambda ok: {**ok, "data": "nope"},
    "an error in a 200": lambda ok: {"error": {"message": "overloaded", "type": "server"}},
    "a JSON string": lambda ok: "nope",
    "JSON nested too deep": lambda ok: b"[" * 100_000 + b"]" * 100_000,
    "NaN": _first_vector([math.nan] * 384),
    "Infinity": _first_vector([1.0] * 383 + [math.inf]),
    "a string value": _first_vector(["0.5"] * 384),
    "a null value": _first_vector([0.5] * 383 + [None]),
    "a bool value": _first_vector([True] * 384),
    "squares that overflow": _first_vector([1e200] * 384),
    "an int beyond any float": lambda ok: json.dumps(ok).replace("0.", "1" + "0" * 400, 1).encode(),
    "a zero vector": _first_vector([0.0] * 384),
    "null vector": _first_vector(None),
    "invalid base64": _first_vector("not base64!"),
    "base64 of the wrong length": _first_vector(base64.b64encode(b"\0" * 1535).decode()),
    "base64 of NaN": _first_vector(
        base64.b64encode(np.full(384, np.nan, "<f4").tobytes()).decode()
    ),
    "vectors of different sizes": lambda ok: {
        **ok,
        "data": [{**d, "embedding": d["embedding"][d["index"] :]} for d in ok["data"]],
    },
    # Sorted by index, the reversed list stayed reversed: each text got another's vector.
    "duplicate indexes": lambda ok: {**ok, "data": [{**d, "index": 0} for d in ok["data"][::-1]]},
    "string indexes": _indexes(["0", "1", "2"]),
    "an index out of range": _indexes([1, 2, 3]),
    "a bool index": _indexes([False, True, 2]),
}


@pytest.mark.parametrize("broken", BROKEN_ANSWERS.values(), ids=BROKEN_ANSWERS.keys())
def test_an_answer_that_is_not_a_well_formed_embeddings_answer_is_a_transient_error(
    provider, broken
):
    """Whatever a broken proxy or a hostile provider sends with a 200 is an EmbeddingError
    (the SDK raised ValueError, AttributeError, binascii.Error ..., or let NaN through to the
    database), retried like a 5xx, never a vector in the database."""
    provider.embedding_answers = [broken] * 5
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(["one", "two", "three"])
    assert (excinfo.value.transient, excinfo.value.code) == (True, "embedding_failed")
    assert str(excinfo.value) == "The embedding provider sent an invalid answer."
    assert len(provider.requests) == 5
    provider.embedding_answers = [broken]  # once: the retry succeeds
    assert len(OpenAIEmbedder().embed(["one", "two", "three"])) == 3


def test_vectors_come_back_by_their_index_from_floats_or_base64(provider):
    texts = ["zero", "one", "two", "three"]
    expected = OpenAIEmbedder().embed(texts)

    def shuffled_base64(ok):
        data = [{**d, "embedding": base64.b64encode(np.asarray(d["embedding"], "<f4")).decode()}
                for d in ok["data"]]  # fmt: skip
        return {**ok, "data": [data[2], data[0], data[3], data[1]]}

    provider.embedding_answers = [shuffled_base64]
    got = OpenAIEmbedder().embed(texts)
    assert np.abs(np.asarray(got) - np.asarray(expected)).max() < 1e-6
    # Vectors of another size, all alike: the model ignores `dimensions` (a setting to fix).
    provider.embedding_answers = [_each_vector(lambda v: v[:383])]
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(texts)
    assert (excinfo.value.transient, excinfo.value.code) == (False, "embedding_dimension_mismatch")


def test_a_question_waits_for_the_provider_at_most_its_budget_retries_included(provider, settings):
    """A chat turn or /v1/retrieve embeds the question while a client waits: a provider that
    does not answer gets EMBEDDING_QUERY_TIMEOUT_SECONDS for every attempt together (five
    attempts of EMBEDDING_TIMEOUT_SECONDS each, and the waits between them, otherwise)."""
    from chatbot_site.errors import UpstreamError
    from knowledge.embeddings import get_embedder
    from knowledge.retrieval import embed_query

    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_TIMEOUT_SECONDS = 30
    settings.EMBEDDING_QUERY_TIMEOUT_SECONDS = 0.5
    provider.embedding_delay = 3
    get_embedder.cache_clear()
    try:
        with pytest.raises(UpstreamError) as excinfo:
            embed_query("Is anyone there?")
    finally:
        get_embedder.cache_clear()
    assert excinfo.value.message == (
        "The embedding provider failed: The embedding provider did not answer in time."
    )
    assert len(provider.requests) == 1  # no attempt begun once the budget was spent

    # Failures that leave time for a retry are still retried within the budget; ingestion
    # (no budget) keeps its five attempts.
    provider.embedding_delay = 0
    provider.fail_with = [503]
    assert len(OpenAIEmbedder().embed_counted(["again"], within=10)[0]) == 1
    assert len(provider.requests) == 3


def test_a_provider_that_trickles_its_answer_is_cut_at_the_timeout(provider, settings):
    """httpx's timeouts bound each single read: an answer sent in 100 pieces 0.5 s apart held a
    chat turn 50 s and /v1/retrieve 30 s. EMBEDDING_TIMEOUT_SECONDS now bounds each request,
    its answer's last byte included; the cut is a timeout, retried (ingestion: five tries)."""
    import openai

    settings.EMBEDDING_TIMEOUT_SECONDS = 0.5
    provider.embedding_pieces, provider.embedding_piece_delay = 40, 0.1  # 4 s, 0.1 s a read
    started = time.monotonic()
    with pytest.raises(EmbeddingError) as excinfo:
        OpenAIEmbedder().embed(["trickle"])
    # Five cut tries and the waits between: about 3 s; uncut, 20 s. Wide: a loaded machine.
    assert time.monotonic() - started < 8
    assert excinfo.value.transient and len(provider.requests) == 5
    assert isinstance(excinfo.value.__cause__, openai.APITimeoutError)
    provider.embedding_pieces, provider.embedding_piece_delay = 5, 0.02  # in time: answered
    assert len(OpenAIEmbedder().embed(["slow but in time"])) == 1


def test_an_answer_that_stops_midway_is_cut_at_the_deadline_not_a_read_timeout_later(
    provider, settings
):
    """Headers after 1.8 s of a 3 s timeout, then one piece and silence: the wait for the next
    piece is bounded by the 1.2 s left (3 s in all), not by a read timeout of its own (4.8 s).
    The bound, 4.2 s, is 0.9 s above the first and 0.6 s under the second: a loaded machine
    took 1.83 s where this test at a third of these times allowed 1.3."""
    settings.EMBEDDING_TIMEOUT_SECONDS = 3
    provider.embedding_delay = 1.8
    provider.embedding_pieces, provider.embedding_piece_delay = 2, 10
    embedder = OpenAIEmbedder()
    embedder.count_tokens("warm up the tokenizer")
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="did not answer in time"):
        embedder.embed_counted(["stops midway"], within=3.3)  # a try, a short second one
    assert time.monotonic() - started < 4.2


def _upload(side, name="a.md", text=b"# A\n\nSome text to embed."):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from knowledge.intake import document_add_upload
    from tenants.services import Actor

    return document_add_upload(
        tenant=side.tenant, actor=Actor.system("tests"), dataset=side.dataset,
        upload=SimpleUploadedFile(name, text),
    ).document  # fmt: skip


@pytest.fixture
def remote_embeddings(provider, settings):
    from knowledge.embeddings import get_embedder

    settings.EMBEDDING_BACKEND = "openai"
    get_embedder.cache_clear()
    yield provider
    get_embedder.cache_clear()


@pytest.mark.django_db
def test_pipeline_releases_the_document_on_a_transient_provider_failure(remote_embeddings):
    from knowledge.ingestion import TransientIngestError, document_ingest
    from knowledge.models import Document, DocumentStatus
    from tests.world import build_tenant

    document = _upload(build_tenant("acme"))
    remote_embeddings.fail_with = [503] * 5
    with pytest.raises(TransientIngestError) as failed:
        document_ingest(document_id=document.pk)
    assert failed.value.document_id == document.pk  # what its retry names
    document.refresh_from_db()
    assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 0)
    assert document_ingest(document_id=document.pk) == "ready"  # the retry succeeds
    remote_embeddings.fail_with = [400]
    Document.all_tenants.filter(pk=document.pk).update(status=DocumentStatus.QUEUED)
    assert document_ingest(document_id=document.pk) == "embedding_rejected"


@pytest.mark.django_db
def test_an_invalid_answer_releases_the_document_for_a_retry_not_internal_error(
    remote_embeddings,
):
    from knowledge.ingestion import TransientIngestError, document_ingest
    from knowledge.models import Chunk, DocumentStatus
    from tests.world import build_tenant

    document = _upload(build_tenant("acme"))
    remote_embeddings.embedding_answers = [BROKEN_ANSWERS["NaN"]] * 5
    with pytest.raises(TransientIngestError, match="sent an invalid answer"):
        document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert (document.status, document.error_code) == (DocumentStatus.QUEUED, None)
    assert not Chunk.all_tenants.filter(document_id=document.pk).exists()


@pytest.mark.django_db
def test_a_document_the_provider_keeps_failing_ends_failed_with_a_readable_reason(
    remote_embeddings, settings
):
    """It was left queued with no error and its attempt given back after the task's retries,
    and the reaper requeued it every 12 minutes, forever."""
    from knowledge.ingestion import TransientIngestError, document_ingest
    from knowledge.intake import document_reingest
    from knowledge.models import DocumentStatus
    from tenants.services import Actor
    from tests.world import build_tenant

    settings.INGEST_TRANSIENT_ATTEMPTS = 3
    side = build_tenant("acme")
    document = _upload(side)
    remote_embeddings.fail_with = [503] * 100
    for failures in (1, 2):
        with pytest.raises(TransientIngestError) as failed:
            document_ingest(document_id=document.pk)
        assert (failed.value.document_id, failed.value.failures) == (document.pk, failures)
        document.refresh_from_db()
        assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 0)
        assert (document.transient_failures, document.error_code) == (failures, None)
    assert document_ingest(document_id=document.pk) == "embedding_unavailable"
    document.refresh_from_db()
    assert (document.status, document.error_code) == (
        DocumentStatus.FAILED,
        "embedding_unavailable",
    )
    assert document.error_message == (
        "The embedding provider did not answer after 3 attempts; reingest to try again."
    )
    assert len(remote_embeddings.requests) == 3 * 5  # five tries a run

    # Reingesting starts the count afresh.
    remote_embeddings.fail_with = [503] * 5
    document_reingest(tenant=side.tenant, actor=Actor.system("tests"), document=document)
    with pytest.raises(TransientIngestError):
        document_ingest(document_id=document.pk)
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    assert (document.status, document.transient_failures) == (DocumentStatus.READY, 0)


@pytest.mark.django_db
def test_a_transient_failure_counts_against_the_document_the_run_took_not_its_own(
    remote_embeddings,
):
    """A fair claim may give a run another tenant's document: the failure is that document's,
    and the retry names it."""
    from django.utils import timezone

    from knowledge.ingestion import TransientIngestError, document_ingest
    from knowledge.models import Document, DocumentStatus
    from tests.world import build_tenant

    busy, waiting = build_tenant("busy"), build_tenant("waiting")
    running = _upload(busy, "running.md", b"# R\n\nRunning.")
    Document.all_tenants.filter(pk=running.pk).update(
        status=DocumentStatus.PROCESSING, processing_started_at=timezone.now()
    )
    own = _upload(busy, "own.md", b"# O\n\nOwn text.")
    theirs = _upload(waiting, "theirs.md", b"# T\n\nTheir text.")
    remote_embeddings.fail_with = [503] * 5
    with pytest.raises(TransientIngestError) as failed:
        document_ingest(document_id=own.pk)
    assert failed.value.document_id == theirs.pk
    failures = dict(
        Document.all_tenants.filter(pk__in=[own.pk, theirs.pk]).values_list(
            "pk", "transient_failures"
        )
    )
    assert failures == {own.pk: 0, theirs.pk: 1}


def test_a_transient_ingest_error_survives_pickling():
    """Celery pickles the exception a task ends with: it logged an UnpickleableExceptionWrapper."""
    import pickle
    import uuid

    from knowledge.ingestion import TransientIngestError

    document_id = uuid.uuid4()
    error = TransientIngestError(
        "The provider kept failing.", document_id=document_id, failures=4, retry_after=9.5
    )
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (type(copy), str(copy), copy.document_id, copy.failures, copy.retry_after) == (
        TransientIngestError, "The provider kept failing.", document_id, 4, 9.5)  # fmt: skip


def test_ingestion_holds_vectors_as_one_float32_array_across_windows():
    from knowledge.ingestion import EMBED_WINDOW, embed_all

    embedder = LocalEmbedder()
    texts = [f"note {i}" for i in range(EMBED_WINDOW + 5)]  # two windows
    vectors = embed_all(embedder, texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), embedder.dimensions)
    for index in (0, EMBED_WINDOW - 1, EMBED_WINDOW, len(texts) - 1):
        alone = embedder.embed([texts[index]])[0]
        assert np.abs(vectors[index] - np.asarray(alone)).max() < 1e-5
    assert embed_all(embedder, []).shape == (0, embedder.dimensions)


def refuse_after_first_request(provider) -> None:
    """The provider answers the next embeddings request, then refuses (400) the one after."""

    def refuse_the_next() -> None:
        provider.fail_with, provider.on_embeddings = [400], None

    provider.on_embeddings = refuse_the_next


def test_a_call_that_fails_after_some_of_its_requests_says_what_they_cost(provider):
    """The provider billed the requests it answered before one failed; the failure said
    nothing of them, and their tokens were lost from usage."""
    refuse_after_first_request(provider)
    with pytest.raises(EmbeddingError) as failed:
        OpenAIEmbedder().embed_counted([f"text number {n}" for n in range(300)])
    sizes = [len(r["body"]["input"]) for r in provider.requests]
    assert sizes == [256, 44] and failed.value.code == "embedding_rejected"
    assert failed.value.spent == 256 * 3  # the first request's, as the provider counted them


def test_ingestion_bills_the_requests_of_a_window_answered_before_one_failed(provider):
    """A window whose texts need two requests (past MAX_TOKENS_PER_REQUEST together): the
    first is answered, the second refused. ``spent`` (what ingestion adds to usage) was told
    nothing of the first request's tokens."""
    from knowledge.embeddings.openai import MAX_TOKENS_PER_REQUEST
    from knowledge.ingestion import embed_all

    embedder = OpenAIEmbedder()
    text = "word " * 1_600  # 8,000 bytes: our estimate 2,000 tokens, the provider's 1,600
    count = MAX_TOKENS_PER_REQUEST // embedder._cost(text) + 1  # one more than fits in one
    refuse_after_first_request(provider)
    told: list[int] = []
    with pytest.raises(EmbeddingError):
        embed_all(embedder, [text] * count, spent=told.append)
    sizes = [len(r["body"]["input"]) for r in provider.requests]
    assert sizes == [count - 1, 1]
    assert told == [(count - 1) * 1_600]


@pytest.mark.parametrize(
    ("model", "override", "latin_only"),
    [
        ("text-embedding-3-small", None, False),
        ("all-MiniLM-L6-v2", None, True),  # served by an OpenAI-compatible server: still English
        ("sentence-transformers/all-mpnet-base-v2", None, True),
        ("all-MiniLM-L6-v2", False, False),  # the operator knows better
        ("my-english-model", True, True),
    ],
)
def test_an_openai_compatible_model_reads_latin_only_when_it_is_an_english_one(
    settings, model, override, latin_only
):
    """An OpenAI-compatible embedder was taken to read every script, whatever model it served:
    all-MiniLM-L6-v2 behind a compatible server (Infinity, TEI) put any two Hindi texts 0.6-0.7
    apart, so a Hindi blocked topic refused every Hindi question, as the local model did
    before it was judged by naming alone (conversations.guardrails.blocked_topic)."""
    settings.EMBEDDING_MODEL, settings.EMBEDDING_LATIN_ONLY = model, override
    assert OpenAIEmbedder().latin_only is latin_only

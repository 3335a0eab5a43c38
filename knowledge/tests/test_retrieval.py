"""Hybrid retrieval against real PostgreSQL + pgvector: filters, fusion, scores and the recall of
filtered ANN search when a tenant owns a small slice of a large table."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from bots.tests.factories import ScopeFactory
from knowledge import vector_index
from knowledge.models import Chunk, DocumentStatus
from knowledge.retrieval import (
    FollowUp,
    Fusion,
    SearchSpace,
    build_sql,
    embed_queries,
    search,
    search_space_for_bot,
    vector_literal,
)
from knowledge.tests.factories import (
    BotDatasetFactory,
    ChunkFactory,
    DatasetFactory,
    DocumentFactory,
    unit_vector,
)
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def near(axis: int, second: int | None = None, weight: float = 0.3) -> list[float]:
    vector = np.array(unit_vector(axis))
    if second is not None:
        vector = vector + weight * np.array(unit_vector(second))
    return list(vector / np.linalg.norm(vector))


@pytest.fixture
def bot_world():
    link = BotDatasetFactory()
    bot, dataset = link.bot, link.dataset
    document = DocumentFactory(tenant=bot.tenant, dataset=dataset, title="Pricing", tags=["faq"])
    return bot, dataset, document


def explain(sql: str, params: dict[str, Any], *, index_scans: bool = False) -> str:
    """The statement's plan; ``index_scans``: sorts and sequential scans off for the rest of
    the test's transaction, as the planner chooses on a large table."""
    with connection.cursor() as cursor:
        if index_scans:
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    print(plan)
    return plan


def ids(hits) -> list:
    return [h.chunk_id for h in hits]


def test_hits_carry_scores_and_document_fields(bot_world):
    bot, _, document = bot_world
    best = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(1),
        page=3,
        text="The annual plan costs less than twelve monthly payments.",
    )
    other = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(2),
        text="Support answers within a day.",
    )
    hits = search(
        search_space_for_bot(bot), query="annual plan price", query_vector=near(1), top_k=5
    )
    assert ids(hits) == [best.pk, other.pk]
    top = hits[0]
    assert (top.document_id, top.dataset_id, top.title, top.page) == (
        document.pk,
        document.dataset_id,
        "Pricing",
        3,
    )
    assert top.vector_score == pytest.approx(1.0, abs=1e-5)
    assert top.relevance == pytest.approx(1.0, abs=1e-5)
    assert top.text_score and top.text_score > 0
    assert hits[1].text_score is None  # no query term in it
    assert hits[1].relevance == pytest.approx(0.0, abs=1e-5)
    assert top.fused_score > hits[1].fused_score


@pytest.mark.parametrize("mode", ["vector", "text"])
def test_a_follow_up_context_steers_each_leg(bot_world, mode):
    """The question leans to the Basic plan; the previous question names the Pro plan."""
    bot, _, document = bot_world
    pro = ChunkFactory(tenant=bot.tenant, document=document, embedding=near(1),
                       text="The Pro plan costs 30 dollars a month.")  # fmt: skip
    basic = ChunkFactory(tenant=bot.tenant, document=document, embedding=near(2),
                         text="The Basic plan costs 5 dollars; extra seats cost more.")  # fmt: skip
    space, question = search_space_for_bot(bot), near(2, 1, 0.8)
    alone = search(space, query="what does it cost", query_vector=question, top_k=2, mode=mode)
    assert ids(alone) == [basic.pk, pro.pk]
    context = FollowUp(text="Tell me about the Pro plan", vector=near(1), weight=0.5)
    steered = search(space, query="what does it cost", query_vector=question, top_k=2,
                     mode=mode, context=context)  # fmt: skip
    assert ids(steered) == [pro.pk, basic.pk]
    if mode == "vector":
        # Ranked (and vector-scored) by the steered vector; relevance is the question's alone.
        assert steered[0].vector_score > alone[1].vector_score
        assert steered[1].vector_score < alone[0].vector_score
        assert steered[0].relevance == pytest.approx(alone[1].relevance, abs=1e-5)
        assert steered[1].relevance == pytest.approx(alone[0].relevance, abs=1e-5)
    off = FollowUp(text="Tell me about the Pro plan", vector=near(1), weight=0.0)
    assert ids(search(space, query="what does it cost", query_vector=question, top_k=2,
                      mode=mode, context=off)) == ids(alone)  # fmt: skip


def test_text_leg_finds_what_vectors_miss(bot_world):
    bot, _, document = bot_world
    keyword = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(50),
        text="Error code E-4471 means the licence server is unreachable.",
    )
    for axis in range(10):
        ChunkFactory(
            tenant=bot.tenant,
            document=document,
            embedding=near(1, axis + 2),
            text=f"Unrelated note number {axis}.",
        )
    space = search_space_for_bot(bot)
    vector_only = search(
        space, query="licence server unreachable", query_vector=near(1), top_k=3, mode="vector"
    )
    assert keyword.pk not in ids(vector_only)
    hybrid = search(space, query="licence server unreachable", query_vector=near(1), top_k=3)
    assert keyword.pk in ids(hybrid)
    text_only = search(
        space, query="licence server unreachable", query_vector=near(1), top_k=3, mode="text"
    )
    assert ids(text_only) == [keyword.pk]


def test_text_leg_matches_any_term_and_ranks_by_coverage(bot_world):
    bot, _, document = bot_world
    both = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(5),
        text="Refunds are paid to the original card within five days.",
    )
    one = ChunkFactory(
        tenant=bot.tenant, document=document, embedding=near(6), text="Refunds need a receipt."
    )
    hits = search(
        search_space_for_bot(bot),
        query="how are refunds paid to my card?",
        query_vector=near(9),
        top_k=5,
        mode="text",
    )
    assert ids(hits) == [both.pk, one.pk]


def test_filters_tenant_datasets_and_tags(bot_world):
    bot, dataset, document = bot_world
    query = near(7)
    visible = ChunkFactory(tenant=bot.tenant, document=document, embedding=query, tags=["faq"])
    # Another tenant's identical chunk, a dataset the bot does not search: never returned.
    ChunkFactory(embedding=query, tags=["faq"])
    unlinked = DocumentFactory(tenant=bot.tenant, dataset=DatasetFactory(tenant=bot.tenant))
    ChunkFactory(tenant=bot.tenant, document=unlinked, embedding=query)
    # A document's chunks are the version last ingested: searched while it is queued for a
    # reingest, being ingested again, or after that run failed.
    again = [
        ChunkFactory(
            tenant=bot.tenant,
            document=DocumentFactory(tenant=bot.tenant, dataset=dataset, **fields),
            embedding=query,
        ).pk
        for fields in (
            {"status": DocumentStatus.QUEUED},
            {"status": DocumentStatus.PROCESSING},
            {"status": DocumentStatus.FAILED, "error_code": "no_text"},
        )
    ]
    untagged = ChunkFactory(tenant=bot.tenant, document=document, embedding=query, tags=[])

    all_hits = search(search_space_for_bot(bot), query="x", query_vector=query, top_k=50)
    assert set(ids(all_hits)) == {visible.pk, untagged.pk, *again}

    tagged = search(
        search_space_for_bot(bot, filter_tags=["faq"]), query="x", query_vector=query, top_k=50
    )
    assert ids(tagged) == [visible.pk]

    bot.scope = ScopeFactory(tenant=bot.tenant, tags=["policies"])
    bot.save()
    assert search(search_space_for_bot(bot), query="x", query_vector=query, top_k=50) == []


def test_bot_without_datasets_or_query_finds_nothing():
    tenant = TenantFactory()
    space = SearchSpace(tenant_id=tenant.pk, dataset_ids=[], languages=[])
    assert search(space, query="anything", query_vector=near(1), top_k=5) == []


def test_fusion_weights_decide_between_legs(bot_world):
    bot, _, document = bot_world
    by_vector = ChunkFactory(
        tenant=bot.tenant, document=document, embedding=near(3), text="Nothing in common."
    )
    by_text = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(40),
        text="Quarterly invoices are emailed.",
    )
    for axis in range(10):  # push the text match down the vector ranking
        ChunkFactory(
            tenant=bot.tenant, document=document, embedding=near(3, axis + 10, 0.5), text="Filler."
        )
    space = search_space_for_bot(bot)

    def top(vector_weight: float, text_weight: float):
        fusion = Fusion(
            rrf_k=60, vector_weight=vector_weight, text_weight=text_weight, candidates=10
        )
        return search(
            space, query="quarterly invoices", query_vector=near(3), top_k=1, fusion=fusion
        )[0].chunk_id

    assert top(1.0, 0.1) == by_vector.pk
    assert top(0.1, 1.0) == by_text.pk


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    picks = centres[rng.integers(0, len(centres), n)]
    vectors = picks + 0.35 * rng.standard_normal(picks.shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_filtered_ann_recall_for_a_tenant_with_one_percent_of_rows():
    """6,000 chunks; the bot's tenant owns 1%. Forced through the HNSW index (sorting is
    switched off, as the planner does by itself on large tenants), the filtered search still
    returns ``top_k`` hits with recall@10 >= 0.95 against exact search — which it does not
    without iterative index scans."""
    rng = np.random.default_rng(7)
    dims = 384
    centres = rng.standard_normal((40, dims)).astype(np.float32)
    big = DocumentFactory()
    small_link = BotDatasetFactory()
    small_doc = DocumentFactory(tenant=small_link.tenant, dataset=small_link.dataset)
    big_vectors = clustered(rng, centres, 5_940)
    small_vectors = clustered(rng, centres, 60)

    def rows(document, vectors):
        return [
            Chunk(
                tenant_id=document.tenant_id,
                dataset_id=document.dataset_id,
                document=document,
                ordinal=i,
                text=f"chunk {i}",
                embedding=v.tolist(),
            )
            for i, v in enumerate(vectors)
        ]

    with connection.cursor() as cursor:  # bulk-build the index after the load (faster)
        cursor.execute(vector_index.drop_sql())
        Chunk.all_tenants.bulk_create(rows(big, big_vectors), batch_size=2000)
        Chunk.all_tenants.bulk_create(rows(small_doc, small_vectors), batch_size=2000)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks at CREATE INDEX
        cursor.execute(vector_index.create_sql("hnsw"))
        cursor.execute("ANALYZE knowledge_chunk")
        cursor.execute("SET LOCAL enable_sort = off")
    small_ids = list(
        Chunk.all_tenants.filter(document=small_doc)
        .order_by("ordinal")
        .values_list("id", flat=True)
    )
    space = search_space_for_bot(small_link.bot)
    queries = clustered(rng, centres, 20)
    recalls = []
    for q in queries:
        exact = np.argsort(-(small_vectors @ q))[:10]
        hits = search(space, query="zzz", query_vector=q.tolist(), top_k=10, mode="vector")
        assert len(hits) == 10
        recalls.append(len({small_ids[i] for i in exact} & set(ids(hits))) / 10)
    assert sum(recalls) / len(recalls) >= 0.95

    literal = "[" + ",".join(f"{x:.6f}" for x in queries[0]) + "]"
    sql = (
        "SELECT id FROM knowledge_chunk c WHERE c.tenant_id = %s"
        " ORDER BY c.embedding <=> %s::vector LIMIT 10"
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, [small_link.tenant_id, literal])
        assert "chunk_embedding_ann" in "\n".join(r[0] for r in cursor.fetchall())
        # Without iterative scans the index hands back ef_search candidates, ~1% of them the
        # tenant's: fewer hits than asked.
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 40")
        cursor.execute(sql, [small_link.tenant_id, literal])
        assert len(cursor.fetchall()) < 10


@pytest.mark.parametrize("text_rank", ["bm25", "ts_rank_cd", "ts_rank"])
def test_every_text_ranking_finds_the_keyword_chunk(bot_world, text_rank):
    bot, _, document = bot_world
    keyword = ChunkFactory(
        tenant=bot.tenant,
        document=document,
        embedding=near(50),
        text="Error code E-4471 means the licence server is unreachable.",
    )
    ChunkFactory(tenant=bot.tenant, document=document, embedding=near(1), text="Other words.")
    fusion = Fusion(
        rrf_k=60, vector_weight=1.0, text_weight=1.0, candidates=10, text_rank=text_rank
    )
    space = search_space_for_bot(bot)
    text_hits = search(
        space, query="licence server", query_vector=near(1), top_k=1, mode="text", fusion=fusion
    )
    assert ids(text_hits) == [keyword.pk]
    hybrid_hits = search(
        space, query="licence server", query_vector=near(1), top_k=2, fusion=fusion
    )
    assert keyword.pk in ids(hybrid_hits)


def load(document, vectors) -> list:
    chunks = Chunk.all_tenants.bulk_create(
        [
            Chunk(
                tenant_id=document.tenant_id,
                dataset_id=document.dataset_id,
                document=document,
                ordinal=i,
                text=f"chunk {i}",
                embedding=v.tolist(),
            )
            for i, v in enumerate(vectors)
        ]
    )
    return [c.pk for c in chunks]


def maintain() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks at CREATE INDEX
    return vector_index.maintain(concurrently=False)


def own_indexes() -> dict:
    with connection.cursor() as cursor:
        return {i.dataset_id: i for i in vector_index.dataset_indexes(cursor)}


@override_settings(VECTOR_INDEX_DATASET_MIN_CHUNKS=40)
def test_a_large_dataset_gets_an_ann_index_of_its_own_and_is_searched_through_it():
    """Beside 200 chunks of another tenant, the bot's large dataset (60 chunks) gets its own
    partial index and its small one (10) does not; the vector leg searches the large one
    through its index and the small one through the shared index, and the merged list is the
    exact ranking over both."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, 384)).astype(np.float32)
    load(DocumentFactory(), clustered(rng, centres, 200))
    link = BotDatasetFactory()
    small = DatasetFactory(tenant=link.tenant)
    BotDatasetFactory(tenant=link.tenant, bot=link.bot, dataset=small)
    big_vectors, small_vectors = clustered(rng, centres, 60), clustered(rng, centres, 10)
    big_ids = load(DocumentFactory(tenant=link.tenant, dataset=link.dataset), big_vectors)
    small_ids = load(DocumentFactory(tenant=link.tenant, dataset=small), small_vectors)

    done = maintain()
    assert done["created"] == [str(link.dataset_id)]  # the 200-chunk dataset is 74% of the table
    assert set(own_indexes()) == {link.dataset_id}
    link.dataset.refresh_from_db()
    small.refresh_from_db()
    assert link.dataset.own_vector_index and not small.own_vector_index
    space = search_space_for_bot(link.bot)
    assert space.indexed_dataset_ids == [link.dataset_id]

    query = clustered(rng, centres, 1)[0]
    sql, params = build_sql(space, mode="vector", top_k=10, fusion=Fusion.from_settings())
    params.update(query="x", vector=vector_literal(query.tolist()))
    plan = explain(sql, params, index_scans=True)
    assert vector_index.dataset_index_name(link.dataset_id) in plan
    assert vector_index.INDEX_NAME in plan  # the small dataset's branch

    everything = np.vstack([big_vectors, small_vectors])
    exact = [(big_ids + small_ids)[i] for i in np.argsort(-(everything @ query))[:10]]
    hits = search(space, query="x", query_vector=query.tolist(), top_k=10, mode="vector")
    assert ids(hits) == exact

    assert maintain()["created"] == []  # kept as it is


def test_a_vector_literal_is_pgvectors_text_at_seven_significant_digits():
    values = [0.1, -1 / 3, 1e-30, 123456789.0, -0.0, 0.0, 5e-324, float(np.float32(0.7))]
    assert vector_literal(values) == ("[0.1,-0.3333333,1e-30,1.234568e+08,-0,0,4.940656e-324,0.7]")
    assert vector_literal([]) == "[]"
    assert vector_literal(np.array([0.5, 0.25], dtype=np.float32)) == "[0.5,0.25]"
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::vector::real[]", [vector_literal([0.1, -1 / 3, 2.0])])
        assert cursor.fetchone()[0] == pytest.approx([0.1, -0.3333333, 2.0])


def test_the_statement_carries_the_query_vector_once_per_branch_and_the_leg_uses_the_index(
    bot_world,
):
    """The vector (3.5 kB of text at 384 dimensions) is quoted into the statement once for
    each branch of the vector leg and once for the fused rows' similarity: its ORDER BY names
    the ``distance`` column, which the planner still serves from the ANN index."""
    bot, _, document = bot_world
    best = ChunkFactory(tenant=bot.tenant, document=document, embedding=near(3))
    ChunkFactory(tenant=bot.tenant, document=document, embedding=near(40))
    space = search_space_for_bot(bot)
    sql, params = build_sql(space, mode="hybrid", top_k=5, fusion=Fusion.from_settings())
    literal = vector_literal(near(3))
    params.update(query="x", vector=literal)
    plan = explain(sql, params, index_scans=True)
    assert vector_index.INDEX_NAME in plan

    with CaptureQueriesContext(connection) as queries:
        hits = search(space, query="x", query_vector=near(3), top_k=5, mode="hybrid")
    assert hits[0].chunk_id == best.pk
    (statement,) = [q["sql"] for q in queries.captured_queries if literal in q["sql"]]
    assert statement.count(literal) == 2  # one branch, the similarity


@override_settings(VECTOR_INDEX_DATASET_MIN_CHUNKS=40)
def test_a_dataset_index_is_dropped_when_the_dataset_shrinks_or_goes_and_rebuilt_for_a_new_kind():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((8, 384)).astype(np.float32)
    load(DocumentFactory(), clustered(rng, centres, 150))  # over half the table: no own index
    shrinking, going, rekinded = (DocumentFactory() for _ in range(3))
    shrinking_ids = load(shrinking, clustered(rng, centres, 45))
    load(going, clustered(rng, centres, 45))
    load(rekinded, clustered(rng, centres, 45))
    maintain()
    assert set(own_indexes()) == {d.dataset_id for d in (shrinking, going, rekinded)}

    # Down to 25 chunks: kept (half the threshold); to 15: dropped, its flag first.
    Chunk.all_tenants.filter(pk__in=shrinking_ids[:20]).delete()
    assert maintain()["dropped"] == []
    Chunk.all_tenants.filter(pk__in=shrinking_ids[20:30]).delete()
    going.dataset.delete()
    done = maintain()
    assert set(done["dropped"]) == {str(shrinking.dataset_id), str(going.dataset_id)}
    assert set(own_indexes()) == {rekinded.dataset_id}
    shrinking.dataset.refresh_from_db()
    assert not shrinking.dataset.own_vector_index

    with override_settings(VECTOR_INDEX_KIND="ivfflat"):
        done = maintain()
    assert done["dropped"] == done["created"] == [str(rekinded.dataset_id)]
    assert own_indexes()[rekinded.dataset_id].kind == "ivfflat"


def test_the_vector_index_command_builds_the_datasets_indexes():
    rng = np.random.default_rng(5)
    load(DocumentFactory(), clustered(rng, np.eye(4, 384), 60))  # two thirds: no own index
    load(DocumentFactory(), clustered(rng, np.eye(4, 384), 30))
    out = io.StringIO()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with override_settings(VECTOR_INDEX_DATASET_MIN_CHUNKS=20):
        call_command("vector_index", "--datasets", "--no-concurrently", stdout=out)
    report = json.loads(out.getvalue())
    assert report["created"] == report["dataset_indexes"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_index_scan_settings_last_only_for_the_search():
    """The settings and the search go to the server as one query (one round trip) in autocommit:
    an implicit transaction, so nothing is left set on the (pooled) connection."""
    link = BotDatasetFactory()
    document = DocumentFactory(tenant=link.tenant, dataset=link.dataset)
    chunk = ChunkFactory(tenant=link.tenant, document=document, embedding=near(2))
    hits = search(search_space_for_bot(link.bot), query="x", query_vector=near(2), top_k=1)
    assert ids(hits) == [chunk.pk]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("backend", "released"), [("openai", True), ("local", False)])
def test_a_question_waiting_for_a_remote_provider_holds_no_database_connection(backend, released):
    """Twenty questions to a hung provider held every pooled connection while they waited; the
    local model answers in milliseconds, and the connection stays for the search after it."""
    from django.db import connections

    from knowledge.embeddings import get_embedder
    from tenants.models import Tenant
    from tests.fake_openai import fake_openai

    wrapper = connections["default"]  # this thread's
    seen: list[bool] = []
    with (
        fake_openai() as fake,
        override_settings(
            EMBEDDING_BACKEND=backend, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY="sk-test"
        ),
    ):
        get_embedder.cache_clear()
        try:
            fake.on_embeddings = lambda: seen.append(wrapper.connection is None)
            Tenant.objects.count()  # the request's reads so far: a pooled connection is held
            assert wrapper.connection is not None
            embed_queries(["When do plans renew?"])
            if not released:
                seen.append(wrapper.connection is None)
        finally:
            get_embedder.cache_clear()
    assert seen == [released]


def test_a_question_naming_a_section_finds_its_chunks_by_their_headings(bot_world):
    """The text leg searched the chunk's text alone: the items of a list under "Guardrails",
    none of which says "guardrails", were found by their vectors or not at all. Now a
    heading's words match in the text leg too, and weigh more than the same word said once in
    a text (RETRIEVAL_HEADING_WEIGHT against 0.1)."""
    bot, _, document = bot_world
    item = ChunkFactory(tenant=bot.tenant, document=document, embedding=near(7),
                        heading_path=["Security", "Guardrails"],
                        text="- Canary lines catch a prompt that leaks.")  # fmt: skip
    aside = ChunkFactory(tenant=bot.tenant, document=document, embedding=near(8),
                         text="Guardrails are listed in their own section.")  # fmt: skip
    for axis in range(6):
        ChunkFactory(tenant=bot.tenant, document=document, embedding=near(20 + axis),
                     text=f"An unrelated passage number {axis}.")  # fmt: skip
    hits = search(search_space_for_bot(bot), query="which guardrails are there?",
                  query_vector=near(1), top_k=5, mode="text")  # fmt: skip
    assert ids(hits) == [item.pk, aside.pk]
    assert hits[0].text_score > hits[1].text_score


def test_hits_carry_their_chunks_position_in_the_document(bot_world):
    bot, _, document = bot_world
    first = ChunkFactory(tenant=bot.tenant, document=document, ordinal=4, embedding=near(2))
    second = ChunkFactory(tenant=bot.tenant, document=document, ordinal=9, embedding=near(1))
    hits = search(search_space_for_bot(bot), query="anything", query_vector=near(1), top_k=5)
    assert [(h.chunk_id, h.ordinal) for h in hits] == [(second.pk, 9), (first.pk, 4)]
    assert "ordinal" not in hits[0].as_json()  # internal: /v1/retrieve's fields are the contract's


def test_the_hybrid_statement_reads_the_gin_and_ann_indexes_with_headings_indexed(bot_world):
    """The heading path in the stored vector (knowledge 0016) changes no plan: the one
    statement's text leg still reads the (dataset, search_vector) GIN index for its rare terms
    and its vector leg the ANN index, once the tenant has more than a handful of chunks."""
    bot, dataset, document = bot_world
    Chunk.all_tenants.bulk_create(
        Chunk(tenant=bot.tenant, dataset=dataset, document=document, ordinal=100 + n,
              text=f"Passage {n} about plans and prices.", heading_path=["Pricing", f"Plan {n}"],
              embedding=near(n % 300), token_count=8, char_end=30)
        for n in range(600)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    space = search_space_for_bot(bot)
    sql, params = build_sql(space, mode="hybrid", top_k=5, fusion=Fusion.from_settings())
    params.update(query="which guardrails are there", vector=vector_literal(near(1)))
    assert "Bitmap Index Scan on chunk_dataset_search_gin" in explain(sql, params)
    # 600 rows: an exact scan is cheaper than the ANN index; at 200k it is not.
    plan = explain(sql, params, index_scans=True)
    assert "Bitmap Index Scan on chunk_dataset_search_gin" in plan
    assert f"Index Scan using {vector_index.INDEX_NAME}" in plan

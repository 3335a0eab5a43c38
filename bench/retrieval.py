"""Retrieval latency and filtered-ANN recall at 200k chunks (384-d) in 20 tenants.

  floor      one plain psycopg pgvector query: the tenant's 10 nearest chunks by cosine
             (``hnsw.iterative_scan`` on, so that a small tenant gets results at all)
  vector     ``knowledge.retrieval.search`` in vector mode: the production statement (datasets,
             ready documents, SET LOCAL scan settings, one transaction)
  hybrid     the same, vector + full text fused (the default mode)
  api        ``POST /v1/retrieve`` through Django (key auth, rate limit, bot lookup, query
             embedding with the local model, hybrid SQL, JSON) — in-process test client
  embed      the query embedding alone (part of ``api``)

Tenants: one holds 1% of the rows ("small"), nineteen share the rest. Recall@10 of ``vector`` is
measured against exact search (index scans off) on the same tenant. The data set is built once
into the database ``bench_retrieval`` on the embedded server (or ``DATABASE_URL``'s server) and
reused by later runs (``BENCH_REBUILD=1`` rebuilds it). ``BENCH_INDEX=ivfflat`` measures the
other index kind (the index is rebuilt when the kind differs). Large datasets get their own
index as celery beat gives it them (``knowledge.vector_index.maintain``;
``BENCH_DATASET_INDEXES=0`` drops them). `make bench` runs it.
"""

from __future__ import annotations

import functools
import io
import os
import statistics
import sys
import time
import uuid
from typing import Any

from bench import create_database, setup_django

ROWS = int(os.environ.get("BENCH_ROWS", "200000"))
TENANTS = 20
DIMS = 384
QUERIES = int(os.environ.get("BENCH_QUERIES", "200"))
WORDS = (  # noqa: SIM905 - a word list reads better as one string
    "invoice refund plan renewal password login export import billing account team member "
    "role permission webhook token quota limit error timeout retry upload document dataset "
    "chunk search vector index language report usage payment card currency tax region backup "
    "restore audit log policy scope topic answer citation stream latency cache worker queue"
).split()


TEXT = os.environ.get("BENCH_TEXT", "zipf")
ZIPF_VOCABULARY = 20_000


@functools.cache
def zipf_vocabulary() -> tuple[list[str], Any]:
    """20,000 pronounceable pseudo-words and Zipf probabilities (s = 1.07, as English text)."""
    import numpy as np

    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    rng = np.random.default_rng(5)
    combos = rng.choice(len(syllables) ** 3, ZIPF_VOCABULARY, replace=False)
    n = len(syllables)
    words = [syllables[x // n // n] + syllables[x // n % n] + syllables[x % n] for x in combos]
    weights = 1.0 / np.arange(1, ZIPF_VOCABULARY + 1) ** 1.07
    return words, weights / weights.sum()


def chunk_texts(rng: Any, count: int) -> list[str]:
    """``BENCH_TEXT=zipf`` (default): 120 words drawn from a Zipf distribution over 20,000
    pseudo-words, like real prose. ``narrow``: 30 words from a 50-word vocabulary, every word
    in ~45% of chunks — the text leg's worst case."""
    if TEXT == "narrow":
        return [" ".join(rng.choice(WORDS, 30)) for _ in range(count)]
    words, probabilities = zipf_vocabulary()
    picks = rng.choice(len(words), (count, 120), p=probabilities)
    return [" ".join(words[w] for w in row) for row in picks]


def query_text(rng: Any) -> str:
    """Four words, drawn as the chunks' words are."""
    if TEXT == "narrow":
        return " ".join(rng.choice(WORDS, 4))
    words, probabilities = zipf_vocabulary()
    return " ".join(words[w] for w in rng.choice(len(words), 4, p=probabilities))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tenant_sizes() -> list[int]:
    """One tenant with 1% of the rows, nineteen sharing the rest (199,999 rows for 200,000)."""
    small_rows = ROWS // 100
    return [small_rows] + [(ROWS - small_rows) // (TENANTS - 1)] * (TENANTS - 1)


def build(
    cursor: Any,
    rng: Any,
    centres: Any,
    *,
    sizes: list[int] | None = None,
    texts: Any = chunk_texts,
    headings: Any = None,
) -> None:
    """20 tenants with a bot, a dataset and documents; ROWS chunks loaded with COPY; the HNSW
    index built after the load. ``sizes`` (chunks per tenant, :func:`tenant_sizes` by default)
    and ``texts`` (``texts(rng, count)``, :func:`chunk_texts` by default) let another benchmark
    build its own mix (bench.upgrade_cjk); ``headings`` (``headings(rng, count)``, heading
    paths as PostgreSQL array literals; none by default) gives chunks heading paths."""
    import numpy as np

    from knowledge import vector_index

    now = "2026-01-01T00:00:00Z"  # chunk timestamps
    sizes = sizes or tenant_sizes()
    cursor.execute(vector_index.drop_sql())
    from bots.models import Bot
    from knowledge.models import BotDataset, Dataset, Document, DocumentStatus
    from tenants.models import Tenant

    for t, size in enumerate(sizes):
        tenant_row = Tenant.objects.create(
            slug=f"bench-{t}", name=f"tenant {t}", default_rate_limit_per_minute=1_000_000
        )
        bot_row = Bot.objects.for_tenant(tenant_row).create(tenant=tenant_row, name="bot", top_k=10)
        dataset_row = Dataset.objects.for_tenant(tenant_row).create(tenant=tenant_row, name="data")
        BotDataset.objects.for_tenant(tenant_row).create(
            tenant=tenant_row, bot=bot_row, dataset=dataset_row
        )
        tenant, dataset = tenant_row.pk, dataset_row.pk
        documents = [
            Document.objects.for_tenant(tenant_row)
            .create(
                tenant=tenant_row,
                dataset=dataset_row,
                title=f"doc {d}",
                source="bench",
                source_type="record",
                status=DocumentStatus.READY,
                content_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            )
            .pk
            for d in range(max(1, size // 500))
        ]
        picks = centres[rng.integers(0, len(centres), size)]
        vectors = picks + 0.35 * rng.standard_normal(picks.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        buffer = io.StringIO()
        chunks = texts(rng, size)
        paths = headings(rng, size) if headings else ["{}"] * size
        for i, vector in enumerate(vectors):
            words = chunks[i]
            literal = "[" + ",".join(f"{x:.5f}" for x in vector) + "]"
            buffer.write(
                f"{uuid.uuid4()}\t{tenant}\t{dataset}\t{documents[i % len(documents)]}\t{i}\t"
                f"{words}\t{paths[i]}\t{{}}\t{{}}\t{len(words.split())}\t0\t{len(words)}\tenglish\t"
                f"{literal}\tbench\tf\t{now}\t{now}\n"
            )
        buffer.seek(0)
        with cursor.cursor.copy(
            "COPY knowledge_chunk (id, tenant_id, dataset_id, document_id, ordinal, text,"
            " heading_path, tags, metadata, token_count, char_start, char_end, language,"
            " embedding, embedding_model, injection_suspected, created_at, updated_at) FROM STDIN"
        ) as copy:
            while data := buffer.read(1 << 20):
                copy.write(data)
        print(f"  tenant {t}: {size} chunks", file=sys.stderr)
    started = time.perf_counter()
    cursor.execute("SET maintenance_work_mem = '1GB'")
    cursor.execute("SET max_parallel_maintenance_workers = 2")
    cursor.execute(vector_index.create_sql("hnsw"))
    cursor.execute("ANALYZE")
    print(f"  HNSW index built in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main() -> int:
    setup_django()
    import numpy as np
    from django.db import connection
    from django.test import Client

    from knowledge.embeddings import get_embedder
    from knowledge.retrieval import search, search_space_for_bot, vector_literal
    from tenants.services import Actor, api_key_create

    rebuild = os.environ.get("BENCH_REBUILD") == "1"
    # Kept for later runs (the build takes minutes); BENCH_REBUILD=1 starts afresh.
    create_database("bench_retrieval" if TEXT == "narrow" else f"bench_retrieval_{TEXT}",
                    reuse=not rebuild)  # fmt: skip
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((200, DIMS)).astype(np.float32)

    from bots.models import Bot
    from tenants.models import Role, Tenant

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM knowledge_chunk")
        (have,) = cursor.fetchone()
        if have != sum(tenant_sizes()):  # (was compared with ROWS: rebuilt on every run)
            print(f"building {ROWS} chunks in {TENANTS} tenants ...", file=sys.stderr)
            cursor.execute("TRUNCATE tenants_tenant CASCADE")
            build(cursor, rng, centres)

    from knowledge import vector_index

    kind = os.environ.get("BENCH_INDEX", "hnsw")
    with connection.cursor() as cursor:
        if vector_index.current_kind(cursor) != kind:
            started = time.perf_counter()
            cursor.execute(vector_index.drop_sql())
            cursor.execute("SET maintenance_work_mem = '1GB'")
            cursor.execute("SET max_parallel_maintenance_workers = 2")
            cursor.execute(vector_index.create_sql(kind, rows=ROWS))
            cursor.execute("ANALYZE knowledge_chunk")
            print(f"  {kind} index built in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    # Large datasets' own indexes, as celery beat builds them (BENCH_DATASET_INDEXES=0: none).
    from django.conf import settings

    if os.environ.get("BENCH_DATASET_INDEXES") == "0":
        settings.VECTOR_INDEX_DATASET_MIN_CHUNKS = ROWS + 1
    started = time.perf_counter()
    done = vector_index.maintain(concurrently=False)
    if done["created"] or done["dropped"]:
        print(f"  dataset indexes: {len(done['created'])} built, {len(done['dropped'])} dropped"
              f" in {time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
    with connection.cursor() as cursor:
        own_indexes = len(vector_index.dataset_indexes(cursor))

    queries = centres[rng.integers(0, len(centres), QUERIES)]
    queries = queries + 0.35 * rng.standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    literals = [vector_literal(q.tolist()) for q in queries]
    floor_sql = (
        "SELECT id FROM knowledge_chunk WHERE tenant_id = %s "
        "ORDER BY embedding <=> %s::vector LIMIT 10"
    )
    raw = connection.cursor().cursor.connection  # the psycopg connection itself

    results: dict[str, dict[str, Any]] = {}
    for label, slug in (("small (1%)", "bench-0"), ("large (5%)", "bench-1")):
        tenant = Tenant.objects.get(slug=slug)
        bot = Bot.objects.for_tenant(tenant).select_related("scope").get()
        space = search_space_for_bot(bot)
        # exact answers, for recall
        exact = []
        with raw.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SET LOCAL enable_indexscan = off")
            for literal in literals:
                cur.execute(floor_sql, [tenant.pk, literal])
                exact.append({r[0] for r in cur.fetchall()})
            cur.execute("COMMIT")
        timings: dict[str, list[float]] = {"floor": [], "vector": [], "hybrid": []}
        recalls: list[float] = []
        short = 0
        with raw.cursor() as cur:
            cur.execute("SET hnsw.iterative_scan = relaxed_order")
            for _ in range(2):  # warm-up pass, then the measured pass
                for k in timings:
                    timings[k].clear()
                recalls.clear()
                short = 0
                for i, literal in enumerate(literals):
                    started = time.perf_counter()
                    cur.execute(floor_sql, [tenant.pk, literal])
                    cur.fetchall()
                    timings["floor"].append((time.perf_counter() - started) * 1000)
                    vector = queries[i].tolist()
                    started = time.perf_counter()
                    hits = search(space, query="x", query_vector=vector, top_k=10, mode="vector")
                    timings["vector"].append((time.perf_counter() - started) * 1000)
                    recalls.append(len({h.chunk_id for h in hits} & exact[i]) / 10)
                    short += len(hits) < 10
                    query = query_text(rng)
                    started = time.perf_counter()
                    search(space, query=query, query_vector=vector, top_k=10)
                    timings["hybrid"].append((time.perf_counter() - started) * 1000)
            cur.execute("RESET hnsw.iterative_scan")
        # through the API
        _key, secret = api_key_create(
            tenant=tenant, actor=Actor.system("bench"), role=Role.CHAT, name="bench"
        )
        client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
        settings.EMBEDDING_QUERY_CACHE_SIZE = 0  # every query embedded, as a new one would be
        embedder = get_embedder()
        api, embed = [], []
        for i in range(QUERIES + 20):
            query = query_text(rng)
            started = time.perf_counter()
            embedder.embed([query])
            embed_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            response = client.post(
                "/v1/retrieve",
                {"bot_id": str(bot.pk), "query": query, "top_k": 10},
                content_type="application/json",
            )
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.content  # noqa: S101
            if i >= 20:
                api.append(elapsed)
                embed.append(embed_ms)
        timings["api"] = api
        timings["embed"] = embed
        results[label] = {
            "timings": timings,
            "recall": statistics.mean(recalls),
            "short": short,
        }

    index = (
        f"HNSW m=16 ef_construction=64, ef_search={settings.HNSW_EF_SEARCH}"
        if kind == "hnsw"
        else f"IVFFLAT lists={vector_index.ivfflat_lists(ROWS)}, probes={settings.IVFFLAT_PROBES}"
    )
    with connection.cursor() as cursor:  # the floor is read from shared buffers or not
        cursor.execute("SHOW shared_buffers")
        (buffers,) = cursor.fetchone()
    print(f"\n{ROWS} chunks x {DIMS}-d, {TENANTS} tenants, {QUERIES} queries, {index}, "
          f"datasets with their own index: {own_indexes}, text: {TEXT}, "
          f"shared_buffers: {buffers}")  # fmt: skip
    print("\n| tenant | path | p50 ms | p95 ms | p95 / floor p95 | recall@10 | short answers |")
    print("|---|---|---|---|---|---|---|")
    for label, result in results.items():
        timings = result["timings"]
        floor95 = percentile(timings["floor"], 0.95)
        for path, values in timings.items():
            p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            recall = f"{result['recall']:.3f}" if path == "vector" else ""
            short_answers = str(result["short"]) if path == "vector" else ""
            print(f"| {label} | {path} | {p50:.2f} | {p95:.2f} | {p95 / floor95:.2f}x "
                  f"| {recall} | {short_answers} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hybrid retrieval: pgvector cosine search and PostgreSQL full text, fused by weighted
reciprocal rank fusion, in one SQL statement.

Both legs are always filtered by tenant, the bot's datasets, the scope's tags and the request's
tags. Every chunk stored is searched: a document's chunks are the version of it last ingested,
replaced in one transaction by the next run that succeeds (one that fails leaves them), so a
document being reingested is found as it was until then, never twice or not at all. The vector leg runs under pgvector 0.8's iterative index scans
(``hnsw.iterative_scan`` / ``ivfflat.iterative_scan`` = ``relaxed_order``), set per transaction,
so a tenant that owns a small slice of a large table still gets as many hits as it asks for.

Each hit carries its vector score (cosine similarity), its text score (``ts_rank_cd``), its fused
score and a ``relevance`` in 0..1 (the cosine similarity clamped to 0..1) — what a scope's
``min_relevance`` is compared with.

The text leg matches *any* query term (``websearch_to_tsquery``'s AND turned into OR): natural
questions rarely contain every term of a passage, and an all-terms match finds nothing for most
of them. Ranking then rewards passages that cover more of the terms. A chunk's stored vector
holds its heading path too (knowledge 0016), at weight A against the text's D: a term found in
the headings scores ``RETRIEVAL_HEADING_WEIGHT`` where one in the text scores 0.1 (PostgreSQL's
weight for D, kept: a chunk without headings ranks as it did).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db import connection

from chatbot_site.errors import UpstreamError
from knowledge.embeddings import EmbeddingError, get_embedder
from knowledge.models import BotDataset, Dataset
from knowledge.parsers import normalize_text
from knowledge.query_vectors import embed_cached
from knowledge.word_forms import base_form

Mode = Literal["hybrid", "vector", "text"]
TEXT_RANKS = ("bm25", "ts_rank_cd", "ts_rank")
MODES: tuple[Mode, ...] = ("hybrid", "vector", "text")


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    dataset_id: uuid.UUID
    title: str
    source: str
    page: int | None
    text: str
    heading_path: list[str]
    tags: list[str]
    vector_score: float | None
    text_score: float | None
    fused_score: float
    relevance: float
    token_count: int = 0  # the chunk's, counted at ingestion with the embedding tokenizer
    injection_suspected: bool = False  # flagged at ingestion as a likely prompt injection
    # The chunk's position in its document (Chunk.ordinal): passages of one document are read
    # out in the document's order, not in retrieval order. Internal: not in as_json.
    ordinal: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "document_id": str(self.document_id),
            "chunk_id": str(self.chunk_id),
            "dataset_id": str(self.dataset_id),
            "title": self.title,
            "source": self.source,
            "page": self.page,
            "text": self.text,
            "heading_path": self.heading_path,
            "tags": self.tags,
            "injection_suspected": self.injection_suspected,
            "score": round(self.relevance, 4),
            "scores": {
                "vector": None if self.vector_score is None else round(self.vector_score, 4),
                "text": None if self.text_score is None else round(self.text_score, 4),
                "fused": round(self.fused_score, 6),
            },
        }


@dataclass
class Retrieval:
    hits: list[Hit]
    embedding_tokens: int = 0
    query_vector: list[float] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class FollowUp:
    """A follow-up question's context: the conversation's previous user message, its vector,
    and how much it counts against the question (its terms' idf and its vector are scaled by
    ``weight``), so that "How much does it cost?" after "Tell me about the Pro plan" finds the
    Pro plan's price while a change of subject still follows the new question."""

    text: str
    vector: Sequence[float] = field(repr=False)
    weight: float


def steer(vector: Sequence[float], context: FollowUp) -> list[float]:
    """The question's vector moved towards the context's by ``weight``, unit length again."""
    blended = [q + context.weight * c for q, c in zip(vector, context.vector, strict=True)]
    norm = sum(x * x for x in blended) ** 0.5 or 1.0
    return [x / norm for x in blended]


@dataclass(frozen=True)
class Fusion:
    """How the two legs are combined; defaults from the settings (tuned in docs/EVAL.md)."""

    rrf_k: int
    vector_weight: float
    text_weight: float
    candidates: int  # the text leg's depth (and the vector leg's, unless vector_candidates)
    # The text leg's ranking: ts_rank_cd (cover density) or ts_rank (frequency), with a
    # PostgreSQL normalization bit mask (0 none, 1 log length, 2 length, ...).
    text_rank: str = "bm25"
    text_normalization: int = 1
    # The text leg reads the postings of a query's rarest terms up to this many rows (bm25).
    text_postings: int = 500
    # The vector leg's depth in hybrid mode. Each extra candidate costs HNSW about 1/selectivity
    # more tuples to visit (and past ~20 the planner trades the index for an exact scan of the
    # tenant's rows), while ranks past 20 add little to a fused top 10 (docs/EVAL.md).
    vector_candidates: int | None = None
    # The rare terms' chunks come from the GIN index while their estimated postings (across all
    # tenants) are at most this many times the searched chunks, else from a scan of those
    # chunks: scanning a row costs about what reading 15 postings does (measured at 200k).
    text_index_factor: float = 15.0
    # The chunks holding every term (when no term is rare) come from the GIN index while the
    # terms' estimated postings (across all tenants) are at most this many times the rows a
    # scan would read to find the leg's depth of them. 80 with a bitmap AND of the terms'
    # postings across tenants (13-21 ns a posting against 1.7-2.6 us a filtered row); 160 since
    # the (dataset, search_vector) index intersects them within the datasets (measured at 200k,
    # docs/BENCHMARKS.md 2026-12-04: a 5% tenant with every term in 45% of its chunks reads the
    # index, a 1% one scans its 2,000 rows).
    text_index_all_factor: float = 160.0
    # A chunk flagged at ingestion as a likely injection keeps this share of its fused score.
    suspect_weight: float = 0.5
    # What a query term found in a chunk's heading path (weight A of its search_vector) counts
    # in the text ranking, where one in its text (weight D) counts 0.1, PostgreSQL's default.
    heading_weight: float = 0.2

    def __post_init__(self) -> None:
        if self.text_rank not in TEXT_RANKS:  # formatted into SQL: an allow-list
            raise ValueError(f"text_rank must be one of {TEXT_RANKS}")
        if not 0 <= self.text_normalization <= 63:
            raise ValueError("text_normalization is a bit mask 0..63")
        if not 0 <= self.heading_weight <= 1:  # PostgreSQL's ranking accepts weights in 0..1
            raise ValueError("heading_weight must be between 0 and 1")

    @property
    def rank_weights(self) -> list[float]:
        """ts_rank's weights for D, C, B and A: PostgreSQL's defaults, A the headings'."""
        return [0.1, 0.2, 0.4, self.heading_weight]

    @classmethod
    def from_settings(cls) -> Fusion:
        return cls(
            rrf_k=settings.RETRIEVAL_RRF_K,
            vector_weight=settings.RETRIEVAL_VECTOR_WEIGHT,
            text_weight=settings.RETRIEVAL_TEXT_WEIGHT,
            candidates=settings.RETRIEVAL_CANDIDATES,
            text_rank=settings.RETRIEVAL_TEXT_RANK,
            text_normalization=settings.RETRIEVAL_TEXT_NORMALIZATION,
            text_postings=settings.RETRIEVAL_TEXT_POSTINGS,
            vector_candidates=settings.RETRIEVAL_VECTOR_CANDIDATES,
            suspect_weight=settings.RETRIEVAL_SUSPECT_WEIGHT,
            heading_weight=settings.RETRIEVAL_HEADING_WEIGHT,
        )


@dataclass(frozen=True)
class SearchSpace:
    """Where a bot may search: its tenant, datasets (with their text-search languages), tags."""

    tenant_id: uuid.UUID
    dataset_ids: list[uuid.UUID]
    languages: list[str]
    scope_tags: list[str] = field(default_factory=list)
    filter_tags: list[str] = field(default_factory=list)
    # Those of dataset_ids with an ANN index of their own (knowledge.vector_index.maintain).
    indexed_dataset_ids: list[uuid.UUID] = field(default_factory=list)


def search_space_for_bot(bot: Any, *, filter_tags: Sequence[str] = ()) -> SearchSpace:
    # Every chat turn asks: plain SQL, not the ORM's compile per call (chatbot_site.lookups).
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT l.dataset_id, d.language, d.own_vector_index
            FROM {BotDataset._meta.db_table} l JOIN {Dataset._meta.db_table} d ON d.id = l.dataset_id
            WHERE l.tenant_id = %s AND l.bot_id = %s ORDER BY l.dataset_id""",  # noqa: S608
            [bot.tenant_id, bot.pk],
        )
        rows = cursor.fetchall()
    scope = bot.scope
    return SearchSpace(
        tenant_id=bot.tenant_id,
        dataset_ids=[r[0] for r in rows],
        languages=sorted({str(r[1]) for r in rows}),
        scope_tags=list(scope.tags) if scope is not None else [],
        filter_tags=list(dict.fromkeys(filter_tags)),
        indexed_dataset_ids=[r[0] for r in rows if r[2]],
    )


@dataclass(frozen=True)
class WordPresence:
    """Where the words asked about (:func:`word_presence`) are held."""

    absent: frozenset[str] = frozenset()  # no chunk of the space holds any of its forms
    in_texts: frozenset[str] = frozenset()  # one of the given texts holds one of its forms


def word_presence(
    space: SearchSpace, words: Sequence[str], *, texts: Sequence[str] = ()
) -> WordPresence:
    """Which of ``words`` no chunk of the space's datasets holds, and which ``texts`` (a scope's
    description and topics) hold, both as text search reads them: a word's lexemes in each of
    the datasets' languages, with those of the adjective it compares
    (:func:`knowledge.word_forms.base_form`: "newer" is held where "new" is, which the stemmer
    leaves apart), against ``knowledge_termstat`` (one index lookup a lexeme) and the texts'
    own lexemes ("ingesting" is said by a topic "ingestion"). One query. A word text search
    drops (a stop word) is neither."""
    if not words or not space.dataset_ids:
        return WordPresence()
    forms = [" ".join(filter(None, (w, base_form(w.casefold())))) for w in words]
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH said AS (
                SELECT l.language, tsvector_to_array(
                    to_tsvector(l.language::regconfig, %(texts)s)) AS lexemes
                FROM unnest(%(languages)s::text[]) AS l(language)
            )
            SELECT w.word, NOT EXISTS (
                SELECT 1 FROM unnest(%(languages)s::text[]) AS l(language)
                CROSS JOIN LATERAL unnest(to_tsvector(l.language::regconfig, w.forms)) AS t
                JOIN knowledge_termstat s ON s.dataset_id = ANY(%(datasets)s)
                 AND s.language = l.language::regconfig AND s.lexeme = t.lexeme
            ), EXISTS (
                SELECT 1 FROM said
                CROSS JOIN LATERAL unnest(to_tsvector(said.language::regconfig, w.forms)) AS t
                WHERE t.lexeme = ANY(said.lexemes)
            )
            FROM unnest(%(words)s::text[], %(forms)s::text[]) AS w(word, forms)
            WHERE EXISTS (
                SELECT 1 FROM unnest(%(languages)s::text[]) AS l(language),
                     LATERAL unnest(to_tsvector(l.language::regconfig, w.word)) AS t
            )""",
            {
                "words": list(words),
                "forms": forms,
                "languages": space.languages,
                "datasets": space.dataset_ids,
                "texts": "\n".join(texts),
            },
        )
        rows = cursor.fetchall()
    return WordPresence(
        absent=frozenset(word for word, absent, _ in rows if absent),
        in_texts=frozenset(word for word, _, said in rows if said),
    )


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, each component to 7 significant digits. One %-format over the
    whole vector: 45 µs instead of 70 for 384 components (a generator of f-strings), the same
    text."""
    return "[" + ("%.7g," * len(vector) % tuple(vector))[:-1] + "]"


def _filters(
    space: SearchSpace, params: dict[str, Any], datasets: str = "c.dataset_id = ANY(%(datasets)s)"
) -> str:
    params["tenant"] = space.tenant_id
    params["datasets"] = space.dataset_ids
    # No condition on the document's status: a document's chunks are the version of it last
    # ingested (knowledge.ingestion), which is searched while a new run is queued, runs or fails.
    clauses = ["c.tenant_id = %(tenant)s", datasets]
    if space.scope_tags:
        params["scope_tags"] = space.scope_tags
        clauses.append("c.tags && %(scope_tags)s::varchar[]")
    if space.filter_tags:
        params["filter_tags"] = space.filter_tags
        clauses.append("c.tags && %(filter_tags)s::varchar[]")
    return " AND ".join(clauses)


# A dataset's own index serves it through a branch of its own; past this many such datasets
# in one search, one scan of the shared index for all of them visits fewer tuples.
MAX_OWN_INDEX_BRANCHES = 4


def _nearest(space: SearchSpace, params: dict[str, Any]) -> str:
    """The vector leg's candidates, nearest first. A dataset with an index of its own is
    searched alone (``dataset_id = <its id>`` is what the planner matches with the partial
    index's predicate), the others together through the shared index; the branches' lists are
    merged by distance."""
    indexed = set(space.indexed_dataset_ids)
    own = [d for d in space.dataset_ids if d in indexed]
    if len(own) > MAX_OWN_INDEX_BRANCHES:
        own = []
    rest = [d for d in space.dataset_ids if d not in own]
    clauses = []
    for i, dataset_id in enumerate(own):
        params[f"own_dataset_{i}"] = dataset_id
        clauses.append(f"c.dataset_id = %(own_dataset_{i})s")
    if rest:
        params["shared_datasets"] = rest
        clauses.append("c.dataset_id = ANY(%(shared_datasets)s)")
    # ORDER BY the output column: the planner sorts by its expression (the index's order, as
    # spelled out), and the vector, 3.5 kB of text, is quoted into the statement once per
    # branch instead of twice.
    branches = [f"""SELECT c.id, c.embedding <=> %(vector)s::vector AS distance
            FROM knowledge_chunk c
            WHERE {_filters(space, params, datasets)} AND c.embedding IS NOT NULL
            ORDER BY distance
            LIMIT %(vector_candidates)s""" for datasets in clauses]  # noqa: S608
    if len(branches) == 1:
        return branches[0]
    merged = "\n            UNION ALL\n".join(f"({branch})" for branch in branches)
    return f"""SELECT id, distance FROM ({merged}) b
            ORDER BY distance LIMIT %(vector_candidates)s"""  # noqa: S608


def build_sql(
    space: SearchSpace, *, mode: Mode, top_k: int, fusion: Fusion, follow_up: bool = False
) -> tuple[str, dict]:
    """The statement and its constant parameters. ``follow_up``: the search is steered by a
    follow-up's context (``%(context)s`` terms, a ``%(question_vector)s`` for relevance); a
    plain search carries none of that."""
    params: dict[str, Any] = {
        "top_k": top_k,
        # Fusion needs each leg's deeper list; a single leg needs only top_k.
        "candidates": max(fusion.candidates, top_k) if mode == "hybrid" else top_k,
        "vector_candidates": (
            max(fusion.vector_candidates or fusion.candidates, top_k) if mode == "hybrid" else top_k
        ),
        "rrf_k": fusion.rrf_k,
        "wv": fusion.vector_weight if mode != "text" else 0.0,
        "wt": fusion.text_weight if mode != "vector" else 0.0,
        "languages": space.languages,
        "normalization": fusion.text_normalization,
        "postings": fusion.text_postings,
        "gin_factor": fusion.text_index_factor,
        "gin_all_factor": fusion.text_index_all_factor,
        "suspect_weight": fusion.suspect_weight,
        "rank_weights": fusion.rank_weights,
        # A few more fused rows than top_k, so that a down-weighted suspect can be overtaken.
        "fused_limit": top_k + min(top_k, 10),
    }
    where = _filters(space, params)
    # Only constant fragments are formatted in; every value is a bound parameter.
    vector_leg = f"""
        SELECT id, distance, row_number() OVER (ORDER BY distance) AS rank FROM (
            {_nearest(space, params)}
        ) v"""  # noqa: S608
    if fusion.text_rank == "bm25":
        # Each query term weighted by its BM25 idf in the searched datasets (frequencies read
        # from knowledge_termstat), times ts_rank's saturating term frequency, length-normalised.
        # Only the rarest terms' postings are read, up to text_postings rows together; the
        # commoner terms score those candidates but bring in none of their own (a chunk holding
        # only common terms cannot reach the top on them). No term that rare: chunks holding
        # every term, as many as the leg's depth.
        text_leg = """
        SELECT id, text_score, row_number() OVER (ORDER BY text_score DESC, id) AS rank FROM (
            SELECT id, sum(score) AS text_score FROM (
                SELECT c.id, w.idf * ts_rank(%(rank_weights)s::float4[], c.search_vector, w.tq,
                                             %(normalization)s) AS score
                FROM matched c
                JOIN weighted w ON c.language = w.language AND c.search_vector @@ w.tq
                OFFSET 0  -- a fence: group the scores, not the rows with their tsvectors
            ) per_term
            GROUP BY id
            ORDER BY text_score DESC
            LIMIT %(candidates)s
        ) t"""
    else:
        # websearch_to_tsquery parses the user's text safely (quotes, "or", "-"); AND → OR.
        text_leg = f"""
        SELECT id, text_score, row_number() OVER (ORDER BY text_score DESC, id) AS rank FROM (
            SELECT c.id, {fusion.text_rank}(%(rank_weights)s::float4[], c.search_vector,
                                            q.query, %(normalization)s) AS text_score
            FROM q JOIN knowledge_chunk c
              ON c.language = q.language AND c.search_vector @@ q.query
            WHERE {where}
            ORDER BY text_score DESC
            LIMIT %(candidates)s
        ) t"""  # noqa: S608
    terms = (
        """
    terms AS MATERIALIZED (
        -- The question's terms, and a follow-up's context terms at the context's weight.
        SELECT l.language::regconfig AS language, t.lexeme, max(t.weight) AS weight
        FROM unnest(%(languages)s::text[]) AS l(language), LATERAL (
            SELECT lexeme, 1::float8 AS weight
            FROM unnest(to_tsvector(l.language::regconfig, knowledge_cjk_bigrams(%(query)s)))
            UNION ALL
            SELECT lexeme, %(context_weight)s::float8
            FROM unnest(to_tsvector(l.language::regconfig, knowledge_cjk_bigrams(%(context)s)))
        ) t
        GROUP BY 1, 2
    ),"""
        if follow_up
        else """
    terms AS MATERIALIZED (
        SELECT DISTINCT l.language::regconfig AS language, t.lexeme, 1::float8 AS weight
        FROM unnest(%(languages)s::text[]) AS l(language),
             LATERAL unnest(to_tsvector(l.language::regconfig,
                                        knowledge_cjk_bigrams(%(query)s))) AS t
    ),"""
    )
    # The hits' relevance: to the question alone (a plain search's similarity is that already).
    question_similarity = (
        """CASE WHEN c.embedding IS NULL THEN NULL
                ELSE 1 - (c.embedding <=> %(question_vector)s::vector) END"""
        if follow_up
        else "NULL::float8"
    )
    weighted = f"""{terms}
    corpus AS MATERIALIZED (
        SELECT greatest(coalesce(sum(s.df), 0), 1) AS n FROM knowledge_termstat s
        WHERE s.dataset_id = ANY(%(datasets)s) AND s.lexeme = ''
    ),
    weighted AS MATERIALIZED (
        -- Frequencies over the searched datasets (not tags or document status); postings is
        -- the running total of the rarer terms' frequencies, rarest first.
        SELECT terms.language, quote_literal(terms.lexeme)::tsquery AS tq, df.df,
               terms.weight * ln(1 + (corpus.n - df.df + 0.5) / (df.df + 0.5)) AS idf,
               sum(df.df) OVER (ORDER BY df.df, terms.language, terms.lexeme) AS postings
        FROM terms CROSS JOIN corpus,
        LATERAL (
            SELECT coalesce(sum(s.df), 0) AS df FROM knowledge_termstat s
            WHERE s.dataset_id = ANY(%(datasets)s) AND s.language = terms.language
              AND s.lexeme = terms.lexeme
        ) df
        WHERE df.df > 0
    ),
    -- No rare term: the chunks holding every term, from the GIN index (its bitmap AND of the
    -- terms' postings, across tenants) or from a scan of the datasets' rows until the leg's
    -- depth is found (expected rows: depth / the terms' joint share, assumed independent).
    every_term AS MATERIALIZED (
        SELECT language, string_agg(tq::text, ' & ')::tsquery AS query,
               sum(df) * (SELECT greatest(reltuples, 1) FROM pg_class
                          WHERE oid = 'knowledge_chunk'::regclass) / (SELECT n FROM corpus)
               <= %(gin_all_factor)s * least(
                   (SELECT n FROM corpus),
                   %(candidates)s / greatest(exp(sum(ln(least(df, (SELECT n FROM corpus))::float8
                                                        / (SELECT n FROM corpus)))), 1e-9)
               ) AS by_index
        FROM weighted GROUP BY language
    ),
    -- The rare terms' chunks come from the GIN index or from a scan of the datasets' rows,
    -- whichever reads less: the index's postings span every tenant, so a term in two of every
    -- five chunks of a small tenant may have 80,000 postings (against 2,000 rows to scan). Its
    -- postings are estimated as its share of the searched chunks times the table's rows.
    seeds AS MATERIALIZED (
        SELECT language, string_agg(tq::text, ' | ')::tsquery AS query,
               sum(df) * (SELECT greatest(reltuples, 1) FROM pg_class
                          WHERE oid = 'knowledge_chunk'::regclass) / (SELECT n FROM corpus)
               <= %(gin_factor)s * (SELECT n FROM corpus) AS by_index
        FROM weighted WHERE postings <= %(postings)s GROUP BY language
    ),
    -- By the index, per language, a LATERAL scan: the rare terms' OR-query is a parameter of
    -- the inner scan, so the (dataset, search_vector) GIN index reads those terms' postings
    -- within the searched datasets, each chunk once, instead of the planner hashing the
    -- query's terms against every row of the tenant.
    -- Each branch below yields a chunk at most once (one language per chunk, and the branches
    -- exclude each other), and the rows carry their tsvectors to the scoring: no second
    -- lookup of each chunk.
    matched AS MATERIALIZED (
        SELECT s.* FROM seeds e CROSS JOIN LATERAL (
            SELECT c.id, c.language, c.search_vector FROM knowledge_chunk c
            WHERE c.language = e.language AND c.search_vector @@ e.query AND {where}
        ) s
        WHERE e.by_index
        UNION ALL
        -- By a scan of the datasets' rows (OFFSET 0 keeps the GIN index out).
        SELECT r.* FROM seeds e CROSS JOIN LATERAL (
            SELECT c.id, c.language, c.search_vector FROM knowledge_chunk c
            WHERE {where} OFFSET 0
        ) r
        WHERE NOT e.by_index AND r.language = e.language AND r.search_vector @@ e.query
        UNION ALL
        -- No term that rare: the chunks holding every term, up to the text leg's depth, by
        -- the index ...
        (SELECT s.* FROM every_term e CROSS JOIN LATERAL (
            SELECT c.id, c.language, c.search_vector FROM knowledge_chunk c
            WHERE c.language = e.language AND c.search_vector @@ e.query AND {where}
            LIMIT %(candidates)s
         ) s
         WHERE e.by_index AND NOT EXISTS (SELECT 1 FROM weighted WHERE postings <= %(postings)s)
         LIMIT %(candidates)s)
        UNION ALL
        -- ... or by filtering the datasets' rows (OFFSET 0 keeps the GIN index out).
        (SELECT s.* FROM every_term e CROSS JOIN LATERAL (
            SELECT r.* FROM (
                SELECT c.id, c.language, c.search_vector FROM knowledge_chunk c
                WHERE {where} OFFSET 0
            ) r
            WHERE r.language = e.language AND r.search_vector @@ e.query
            LIMIT %(candidates)s
         ) s
         WHERE NOT e.by_index
           AND NOT EXISTS (SELECT 1 FROM weighted WHERE postings <= %(postings)s)
         LIMIT %(candidates)s)
    ),"""  # noqa: S608
    # The text leg's query: per-term idf weights (bm25), or one OR-query per language.
    text_query = (
        weighted
        if fusion.text_rank == "bm25"
        else """
    q AS MATERIALIZED (
        SELECT l.language::regconfig AS language,
               NULLIF(replace(websearch_to_tsquery(l.language::regconfig,
                                                  knowledge_cjk_bigrams(%(query)s))::text,
                              ' & ', ' | '), '')::tsquery AS query
        FROM unnest(%(languages)s::text[]) AS l(language)
    ),"""
    )
    empty_vector = "SELECT NULL::uuid AS id, NULL::float8 AS distance, NULL::bigint AS rank LIMIT 0"
    empty_text = "SELECT NULL::uuid AS id, NULL::float4 AS text_score, NULL::bigint AS rank LIMIT 0"
    sql = f"""
    WITH {text_query if mode != "vector" else ""}
    vec AS MATERIALIZED ({vector_leg if mode != "text" else empty_vector}),
    txt AS MATERIALIZED ({text_leg if mode != "vector" else empty_text}),
    fused AS (
        SELECT coalesce(vec.id, txt.id) AS id, vec.distance, txt.text_score,
               coalesce(%(wv)s / (%(rrf_k)s + vec.rank), 0)
             + coalesce(%(wt)s / (%(rrf_k)s + txt.rank), 0) AS fused
        FROM vec FULL OUTER JOIN txt ON vec.id = txt.id
        ORDER BY fused DESC, id
        LIMIT %(fused_limit)s
    )
    SELECT c.id, c.document_id, c.dataset_id, coalesce(d.indexed_title, d.title), d.source,
           c.page, c.text,
           c.heading_path, c.tags, c.token_count,
           CASE WHEN c.embedding IS NULL THEN NULL
                ELSE 1 - (c.embedding <=> %(vector)s::vector) END AS similarity,
           fused.text_score, s.fused, c.injection_suspected,
           {question_similarity} AS question_similarity, c.ordinal
    FROM fused
    JOIN knowledge_chunk c ON c.id = fused.id
    JOIN knowledge_document d ON d.id = c.document_id
    CROSS JOIN LATERAL (
        SELECT fused.fused * CASE WHEN c.injection_suspected THEN %(suspect_weight)s ELSE 1 END
               AS fused
    ) s
    ORDER BY s.fused DESC, c.id
    LIMIT %(top_k)s
    """  # noqa: S608
    return sql, params


def _scan_settings() -> list[tuple[str, str]]:
    return [
        ("hnsw.iterative_scan", "relaxed_order"),
        ("hnsw.ef_search", str(settings.HNSW_EF_SEARCH)),
        ("hnsw.max_scan_tuples", str(settings.HNSW_MAX_SCAN_TUPLES)),
        ("ivfflat.iterative_scan", "relaxed_order"),
        ("ivfflat.probes", str(settings.IVFFLAT_PROBES)),
        ("ivfflat.max_probes", str(settings.IVFFLAT_MAX_PROBES)),
    ]


def search(
    space: SearchSpace,
    *,
    query: str,
    query_vector: Sequence[float],
    top_k: int,
    mode: Mode = "hybrid",
    fusion: Fusion | None = None,
    context: FollowUp | None = None,
) -> list[Hit]:
    """The ``top_k`` best chunks for ``query`` in ``space`` (one statement, in one transaction
    whose index-scan settings are ``SET LOCAL``, sent in one round trip). With a follow-up's ``context``, the vector leg
    searches with the steered vector and the text leg (bm25) adds the context's terms at its
    weight (ranking, and each hit's ``vector_score``, follow the steered search); each hit's
    ``relevance`` is still its similarity to the question alone. The query is searched in the
    form documents are stored in (:func:`knowledge.parsers.normalize_text`)."""
    query = normalize_text(query)
    if not space.dataset_ids or not query.strip():
        return []
    steered = context is not None and context.weight > 0 and bool(context.vector)
    sql, params = build_sql(space, mode=mode, top_k=top_k, fusion=fusion or Fusion.from_settings(),
                            follow_up=steered)  # fmt: skip
    params["query"] = query
    if context is not None and steered:
        params["question_vector"] = vector_literal(query_vector)
        params["vector"] = vector_literal(steer(query_vector, context))
        params["context"], params["context_weight"] = normalize_text(context.text), context.weight
    else:
        params["vector"] = vector_literal(query_vector)
    scan = _scan_settings()
    set_config = "SELECT " + ", ".join(
        f"set_config('{name}', %(scan_{i})s, true)" for i, (name, _) in enumerate(scan)
    )
    params.update({f"scan_{i}": value for i, (_, value) in enumerate(scan)})
    # One round trip: the client-side binding cursor sends both statements as one simple query,
    # which PostgreSQL runs as one implicit transaction (or inside the caller's), so the
    # settings are local to it. BEGIN, the settings, the search and COMMIT as four round trips
    # cost 1.0-1.2 ms more at 200k chunks (docs/BENCHMARKS.md).
    with connection.cursor() as cursor:
        cursor.execute(f"{set_config};\n{sql}", params)
        if not cursor.nextset():  # the first result is the settings' row
            raise RuntimeError("the search statement returned no result")
        rows = cursor.fetchall()
    hits = []
    for row in rows:
        similarity = _score(row[10])
        own = _score(row[14] if steered else row[10])  # the similarity to the question alone
        hits.append(
            Hit(
                chunk_id=row[0],
                document_id=row[1],
                dataset_id=row[2],
                title=row[3],
                source=row[4],
                page=row[5],
                text=row[6],
                heading_path=list(row[7] or []),
                tags=list(row[8] or []),
                vector_score=similarity,
                text_score=_score(row[11]),
                fused_score=_score(row[12]) or 0.0,
                # The question's own: a follow-up's context changes what is found, not whether
                # it is relevant enough to answer from (min_relevance, scope evidence).
                relevance=min(1.0, max(0.0, own or 0.0)),
                token_count=int(row[9] or 0),
                injection_suspected=bool(row[13]),
                ordinal=int(row[15]),
            )
        )
    return hits


def _score(value: Any) -> float | None:
    """A score as a finite float (None stays None). A zero vector stored before answers were
    checked has no direction: its cosine similarity is NaN, which no JSON answer can carry; it
    counts as no relevance."""
    if value is None:
        return None
    score = float(value)
    return score if math.isfinite(score) else 0.0


def retrieve(
    space: SearchSpace,
    *,
    query: str,
    top_k: int,
    mode: Mode = "hybrid",
    fusion: Fusion | None = None,
) -> Retrieval:
    """Embed ``query`` with the dataset's embedding model, then :func:`search`."""
    query = normalize_text(query)
    if not space.dataset_ids or not query.strip():
        return Retrieval(hits=[])
    vector, tokens = embed_query(query, tenant_id=space.tenant_id)
    hits = search(space, query=query, query_vector=vector, top_k=top_k, mode=mode, fusion=fusion)
    return Retrieval(hits=hits, embedding_tokens=tokens, query_vector=vector)


def _release_connection() -> None:
    """A remote provider may take seconds (``EMBEDDING_QUERY_TIMEOUT_SECONDS``): the thread's
    pooled database connection goes back to the pool meanwhile. Held, twenty questions to a
    hung provider took every pooled connection, and other tenants' requests waited for one
    (7.6 s for ``GET /v1/bots``). The next query borrows one again."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


def embed_queries(
    texts: Sequence[str], *, tenant_id: uuid.UUID | None = None
) -> tuple[list[list[float]], int]:
    """The texts' vectors (the embedding backend's, in one call) and their tokens (as the
    provider counted them); a provider failure is a ``502 upstream_error``. With a tenant, a
    text that tenant's questions were embedded for lately is not embedded again
    (:mod:`knowledge.query_vectors`) and costs no tokens. Someone waits for the answer: a
    provider gets ``EMBEDDING_QUERY_TIMEOUT_SECONDS`` for the call, retries included. Texts are
    embedded in the form documents are (:func:`knowledge.parsers.normalize_text`)."""
    embedder = get_embedder()
    if settings.EMBEDDING_BACKEND == "openai":
        _release_connection()
    # A text of invisible characters only stays as it is: providers refuse an empty input.
    texts = [normalize_text(text) or text for text in texts]
    try:
        vectors, tokens = embed_cached(
            embedder, texts, tenant_id=tenant_id, within=settings.EMBEDDING_QUERY_TIMEOUT_SECONDS
        )
    except EmbeddingError as exc:
        wait = {} if exc.retry_after is None else {"Retry-After": str(math.ceil(exc.retry_after))}
        raise UpstreamError(f"The embedding provider failed: {exc}", headers=wait) from exc
    return [list(v) for v in vectors], tokens


def embed_query(query: str, *, tenant_id: uuid.UUID | None = None) -> tuple[list[float], int]:
    """One query's vector and tokens (:func:`embed_queries`)."""
    (vector,), tokens = embed_queries([query], tenant_id=tenant_id)
    return vector, tokens

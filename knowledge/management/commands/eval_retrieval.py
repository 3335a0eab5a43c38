"""``make eval DATASET=<dir>``: retrieval quality on a BEIR-like set, through the real ingestion
(Celery workers this command starts) and the real retrieval SQL.

``<dir>`` holds ``corpus.jsonl`` (``id``, ``title``, ``text``) and ``queries.jsonl`` (``id``,
``query``, ``relevant_ids``). The corpus is ingested once into the tenant ``eval-<dir name>``
(reused by later runs). Prints nDCG@10 and recall@100 for vector-only, text-only and hybrid.
``--tune`` searches the fusion parameters on ``queries_train.jsonl`` instead. ``--follow-up``
measures ``RETRIEVAL_HISTORY_WEIGHT`` on the test queries as follow-ups (see
:meth:`Command.follow_up`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from bots.models import Bot
from bots.services import bot_create
from knowledge.embeddings import get_embedder
from knowledge.follow_ups import names_no_subject, what_to_search
from knowledge.intake import documents_add_records
from knowledge.models import Dataset, Document, DocumentStatus
from knowledge.retrieval import MODES, FollowUp, Fusion, Mode, search, search_space_for_bot
from knowledge.services import bot_datasets_set, dataset_create
from tenants.models import Tenant
from tenants.services import Actor, tenant_create

# Follow-ups that mean nothing without the previous question (written before any run).
FOLLOW_UPS = [
    "What is the evidence for this?",
    "Is that true?",
    "Tell me more about it.",
    "What did the studies find?",
    "Why is that?",
]
HISTORY_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 1.0)

REFERENCES = {
    "scifact": "published on SciFact: BM25 0.665, all-MiniLM-L6-v2 0.645 nDCG@10",
}


@dataclass(frozen=True)
class Run:
    """The judged queries of a run: where they search, their vectors, and each document's id
    in the set (``external``)."""

    space: Any
    queries: list[dict[str, Any]]
    vectors: list[list[float]]
    external: dict[Any, str]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int = 100) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


class Command(BaseCommand):
    help = "Retrieval quality (nDCG@10, recall@100) on a BEIR-like JSONL set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_dir", type=Path)
        parser.add_argument("--queries", default="queries.jsonl")
        parser.add_argument("--corpus", default="corpus.jsonl")
        parser.add_argument("--workers", type=int, default=2, help="ingestion worker processes")
        parser.add_argument("--tune", action="store_true", help="grid-search the fusion")
        parser.add_argument(
            "--follow-up", action="store_true", help="measure RETRIEVAL_HISTORY_WEIGHT"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["dataset_dir"]
        corpus_path = root / options["corpus"]
        queries_path = root / ("queries_train.jsonl" if options["tune"] else options["queries"])
        for path in (corpus_path, queries_path):
            if not path.is_file():
                raise CommandError(f"{path} not found")
        name = slugify(root.resolve().name) or "eval"
        bot = self.ingest(name, read_jsonl(corpus_path), workers=options["workers"])
        queries = read_jsonl(queries_path)
        external = dict(Document.objects.for_tenant(bot.tenant_id).values_list("id", "external_id"))
        embedder = get_embedder()
        started = time.perf_counter()
        vectors = embedder.embed([q["query"] for q in queries])
        self.stderr.write(
            f"{len(queries)} queries embedded in {time.perf_counter() - started:.1f} s"
        )
        run = Run(search_space_for_bot(bot), queries, vectors, external)
        if options["tune"]:
            self.tune(run)
            return
        if options["follow_up"]:
            self.follow_up(run)
            return
        self.stdout.write(
            f"\n{name}: {len(queries)} queries from {queries_path.name}, "
            f"{len(external)} documents; {REFERENCES.get(name, '')}"
        )
        self.stdout.write(f"fusion: {Fusion.from_settings()}\n")
        self.stdout.write("| mode | nDCG@10 | recall@100 | ms/query |\n|---|---|---|---|")
        for mode in MODES:
            ndcg, recall, ms = self.score(run, mode, None)
            self.stdout.write(f"| {mode} | {ndcg:.4f} | {recall:.4f} | {ms:.1f} |")

    def score(
        self,
        run: Run,
        mode: Mode,
        fusion: Fusion | None,
        contexts: Sequence[FollowUp | None] | None = None,
    ) -> tuple[float, float, float]:
        ndcgs: list[float] = []
        recalls: list[float] = []
        started = time.perf_counter()
        for i, (query, vector) in enumerate(zip(run.queries, run.vectors, strict=True)):
            context = contexts[i] if contexts else None
            relevant = {str(r) for r in query["relevant_ids"]}
            # nDCG@10 from a top-30 search (candidate depths grow with top_k, so a top-100
            # search would hide what the defaults do; 30 chunks hold 10 distinct documents —
            # the unit SciFact judges — for nearly every query), recall@100 from a top-100 one.
            for top_k, metric, out in ((30, ndcg_at, ndcgs), (100, recall_at, recalls)):
                hits = search(run.space, query=query["query"], query_vector=vector, top_k=top_k,
                              mode=mode, fusion=fusion, context=context)  # fmt: skip
                ranked = list(dict.fromkeys(str(run.external[h.document_id]) for h in hits))
                out.append(metric(ranked, relevant))
        ms = (time.perf_counter() - started) * 1000 / max(1, len(run.queries))
        return sum(ndcgs) / len(ndcgs), sum(recalls) / len(recalls), ms

    def follow_up(self, run: Run) -> None:
        """Two sides of ``RETRIEVAL_HISTORY_WEIGHT``, hybrid, on the judged queries:

        - *carried*: the previous message is a judged query, the question a follow-up that means
          nothing alone ("Is that true?"); judged by the previous query's relevant documents.
        - *switched*: the previous message is another judged query (half the set away), the
          question a judged query of its own; judged by its own relevant documents, so any
          loss against weight 0 is what steering costs a change of subject.
        """
        vectors = get_embedder().embed(FOLLOW_UPS)
        n = len(run.queries)
        carried = Run(
            run.space,
            [{"query": FOLLOW_UPS[i % len(FOLLOW_UPS)], "relevant_ids": q["relevant_ids"]}
             for i, q in enumerate(run.queries)],
            [vectors[i % len(FOLLOW_UPS)] for i in range(n)],
            run.external,
        )  # fmt: skip
        bare = sum(names_no_subject(q["query"]) for q in carried.queries)
        self.stdout.write(f"\nfollow-ups: {n} judged queries, hybrid (defaults otherwise); "
                          f"{bare} of the carried follow-ups name nothing\n")  # fmt: skip
        self.stdout.write("| history weight | carried nDCG@10 | carried, as chat searches it "
                          "| switched nDCG@10 | recall@100 carried / switched |")  # fmt: skip
        self.stdout.write("|---|---|---|---|---|")
        for weight in HISTORY_WEIGHTS:
            previous = [
                FollowUp(text=q["query"], vector=v, weight=weight)
                for q, v in zip(run.queries, run.vectors, strict=True)
            ]
            # As chat searches them (knowledge.follow_ups.what_to_search).
            searched = [
                what_to_search(f["query"], v, p)
                for f, v, p in zip(carried.queries, carried.vectors, previous, strict=True)
            ]
            as_chat = Run(
                run.space,
                [{"query": text, "relevant_ids": f["relevant_ids"]}
                 for (text, _, _), f in zip(searched, carried.queries, strict=True)],
                [list(vector) for _, vector, _ in searched],
                run.external,
            )  # fmt: skip
            switched = [previous[(i + n // 2) % n] for i in range(n)]
            carry = self.score(carried, "hybrid", None, previous)
            chat = self.score(as_chat, "hybrid", None, [context for _, _, context in searched])
            switch = self.score(run, "hybrid", None, switched)
            self.stdout.write(f"| {weight} | {carry[0]:.4f} | {chat[0]:.4f} | {switch[0]:.4f} "
                              f"| {carry[1]:.4f} / {switch[1]:.4f} |")  # fmt: skip

    def tune(
        self,
        run: Run,
    ) -> None:
        """Two stages on the train queries: the text ranking (text-only nDCG), then the fusion
        (k, text weight, candidate depth) with that ranking."""
        base = Fusion.from_settings()
        self.stdout.write("\n| text ranking | normalization | text-only nDCG@10 | recall@100 |")
        self.stdout.write("|---|---|---|---|")
        best_rank: tuple[float, str, int] = (-1.0, base.text_rank, base.text_normalization)
        for rank, normalization in (("bm25", 1), ("bm25", 0), ("bm25", 2),
                                    ("ts_rank_cd", 1)):  # fmt: skip
            fusion = replace(base, text_rank=rank, text_normalization=normalization)
            ndcg, recall, _ = self.score(run, "text", fusion)
            self.stdout.write(f"| {rank} | {normalization} | {ndcg:.4f} | {recall:.4f} |")
            best_rank = max(best_rank, (ndcg, rank, normalization))
        _, rank, normalization = best_rank
        ndcg, recall, _ = self.score(run, "vector", base)
        self.stdout.write(f"\nvector only: nDCG@10 {ndcg:.4f}, recall@100 {recall:.4f}")
        rows = []
        grid: Iterable[tuple[int, float, int]] = itertools.product(
            (20, 60), (0.5, 0.7, 1.0, 1.3), (100,)
        )
        for rrf_k, text_weight, candidates in grid:
            fusion = Fusion(rrf_k=rrf_k, vector_weight=1.0, text_weight=text_weight,
                            candidates=candidates, text_rank=rank,
                            text_normalization=normalization)  # fmt: skip
            ndcg, recall, _ = self.score(run, "hybrid", fusion)
            rows.append((ndcg, recall, fusion))
            self.stderr.write(f"{fusion}: nDCG@10 {ndcg:.4f} recall@100 {recall:.4f}")
        self.stdout.write(f"\nhybrid, text ranking {rank}/{normalization}:\n")
        self.stdout.write("| rrf_k | text weight | candidates | nDCG@10 | recall@100 |")
        self.stdout.write("|---|---|---|---|---|")
        for ndcg, recall, f in sorted(rows, key=lambda r: -r[0]):
            self.stdout.write(
                f"| {f.rrf_k} | {f.text_weight} | {f.candidates} | {ndcg:.4f} | {recall:.4f} |"
            )
        self.depths(run, max(rows, key=lambda r: r[0])[2])

    def depths(
        self,
        run: Run,
        best: Fusion,
    ) -> None:
        """What the latency bounds cost in quality: the vector leg's depth and the text leg's
        postings budget, at the best fusion."""
        self.stdout.write(f"\ndepths at rrf_k {best.rrf_k}, text weight {best.text_weight}:\n")
        self.stdout.write("| vector candidates | text postings | nDCG@10 | recall@100 | ms/query |")
        self.stdout.write("|---|---|---|---|---|")
        for vector_candidates, postings in itertools.product((20, 40, 100),
                                                             (1000, 2000, 4000, 10**9)):  # fmt: skip
            fusion = replace(best, vector_candidates=vector_candidates, text_postings=postings)
            ndcg, recall, ms = self.score(run, "hybrid", fusion)
            self.stdout.write(f"| {vector_candidates} | {postings} | {ndcg:.4f} | {recall:.4f} "
                              f"| {ms:.1f} |")  # fmt: skip

    # --- ingestion through the real pipeline -----------------------------------------------

    def ingest(self, name: str, corpus: list[dict[str, Any]], *, workers: int) -> Bot:
        actor = Actor.system("manage.py eval_retrieval")
        slug = f"eval-{name}"[:50]
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
            slug=slug, name=f"Evaluation: {name}", actor=actor
        )
        dataset = Dataset.objects.for_tenant(tenant).filter(name=name).first()
        bot = Bot.objects.for_tenant(tenant).filter(name=name).first()
        if dataset is None:
            dataset = dataset_create(tenant=tenant, actor=actor, name=name)
        if bot is None:
            bot = bot_create(tenant=tenant, actor=actor, name=name)
            bot_datasets_set(tenant=tenant, actor=actor, bot=bot, datasets=[dataset])
        documents = Document.objects.for_tenant(tenant).filter(dataset=dataset)
        have = set(documents.values_list("external_id", flat=True))
        missing = [r for r in corpus if str(r["id"]) not in have]
        for start in range(0, len(missing), 1000):
            records = [
                {"title": r.get("title") or "", "text": r.get("text") or r.get("title") or "-",
                 "external_id": str(r["id"])}
                for r in missing[start : start + 1000]
            ]  # fmt: skip
            documents_add_records(tenant=tenant, actor=actor, dataset=dataset, records=records)
        pending = documents.exclude(status__in=[DocumentStatus.READY, DocumentStatus.FAILED])
        if pending.exists():
            run_workers(pending, workers, self.stderr.write)
        failed = documents.filter(status=DocumentStatus.FAILED).count()
        if failed:
            self.stderr.write(f"warning: {failed} documents failed to ingest")
        return bot


def run_workers(pending: Any, workers: int, write: Callable[[str], Any]) -> None:
    """Run Celery ingestion workers until ``pending`` (a queryset of documents) is empty."""
    total = pending.count()
    write(f"ingesting {total} documents with {workers} worker processes ...")
    env = dict(os.environ)
    argv = [
        sys.executable, "-m", "celery", "-A", "chatbot_site", "worker",
        f"--concurrency={workers}", "--loglevel=WARNING", "--without-mingle",
        "--without-gossip", "-n", f"eval-{os.getpid()}@%h",
    ]  # fmt: skip
    started = time.perf_counter()
    # The worker's banner and logs go to stderr: stdout carries only the report.
    proc = subprocess.Popen(  # noqa: S603
        argv, cwd=settings.BASE_DIR, env=env, stdout=sys.stderr, stderr=sys.stderr
    )
    try:
        while (left := pending.count()) > 0:
            if proc.poll() is not None:
                raise CommandError("the ingestion worker exited")
            done = total - left
            rate = done / max(1e-9, time.perf_counter() - started)
            write(f"  {done}/{total} ingested ({rate:.1f} documents/s)")
            time.sleep(2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    write(f"ingested {total} documents in {time.perf_counter() - started:.0f} s")

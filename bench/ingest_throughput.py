"""Ingestion throughput against its floors, measured in one run.

  parse+chunk   our sandboxed parse + structure-aware chunking of a set of PDFs, pages/s
  floor         raw pdfplumber ``page.extract_text()`` of the same PDFs in-process, pages/s
  embed+store   local embedder + replacing the chunks in PostgreSQL, chunks/s
  floor         raw model encode of the same chunk texts in document order (ONNX session, batches
                of 8 padded to their longest text: what the embedder did before it sorted by
                length), chunks/s

PDFs: the first ``BENCH_PDFS`` (default 30) readable PDFs under ``../shared/corpora/pdf`` by
path, or generated ones when that folder is absent. `make bench` runs it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import create_database, destroy_database, setup_django

CORPUS = Path(
    os.environ.get(
        "BENCH_CORPUS", Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "pdf"
    )
)
COUNT = int(os.environ.get("BENCH_PDFS", "30"))
ROUNDS = int(os.environ.get("BENCH_PARSE_ROUNDS", "3"))


def raw_encode(embedder: Any, texts: list[str], batch: int = 8) -> None:
    """The ONNX session over batches of ``batch`` texts in the order given (mean pooling)."""
    import numpy as np

    for start in range(0, len(texts), batch):
        encodings = embedder._tokenizer.encode_batch(texts[start : start + batch])
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (hidden,) = embedder._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        (hidden * mask[:, :, None]).sum(axis=1)


def pdfs() -> list[Path]:
    import pdfplumber

    found = []
    for path in sorted(CORPUS.rglob("*.pdf")) if CORPUS.is_dir() else []:
        try:
            with pdfplumber.open(path) as pdf:
                if 1 <= len(pdf.pages) <= 40 and any(
                    (p.extract_text() or "").strip() for p in pdf.pages[:2]
                ):
                    found.append(path)
        except Exception:  # noqa: S112 - unreadable samples are simply not benchmarked
            continue
        if len(found) >= COUNT:
            break
    return found


def main() -> int:
    setup_django()
    import pdfplumber
    from django.conf import settings
    from django.db import transaction

    from knowledge.chunking import chunk_blocks
    from knowledge.embeddings import get_embedder
    from knowledge.models import Chunk
    from knowledge.parsers import PDF, Limits
    from knowledge.parsers.sandbox import parse_isolated
    from knowledge.tests.factories import DocumentFactory
    from tests.world import build_tenant

    files = pdfs()
    if not files:
        from knowledge.tests.fixtures import make_pdf

        tmp = Path("/tmp/bench-pdfs")  # noqa: S108
        tmp.mkdir(exist_ok=True)
        for n in range(COUNT):
            (tmp / f"{n}.pdf").write_bytes(
                make_pdf([f"Page {p} of document {n}. " * 40 for p in range(5)])
            )
        files = sorted(tmp.glob("*.pdf"))
    embedder = get_embedder()
    embedder.embed(["warm up"])
    # Warm-up pass of both paths (file cache, fonts, the parser zygote), then the timed passes.
    for path in files:
        with pdfplumber.open(path) as pdf:
            for page in pdf.pages:
                page.extract_text()
    parse_isolated(files[0], PDF, limits=Limits(), memory_bytes=settings.PARSE_MEMORY_BYTES,
                   cpu_seconds=120, wall_seconds=180)  # fmt: skip

    # Interleaved per file, order alternating by round, so that drift and caches hit both alike.
    pages = 0
    for path in files:
        with pdfplumber.open(path) as pdf:
            pages += len(pdf.pages)
    floor_times: list[float] = []
    our_times: list[float] = []
    drafts: list[Any] = []
    for round_number in range(ROUNDS):
        floor_total = ours_total = 0.0
        drafts.clear()
        for path in files:

            def floor(path: Path = path) -> None:
                with pdfplumber.open(path) as pdf:
                    for page in pdf.pages:
                        page.extract_text()

            def ours(path: Path = path) -> None:
                blocks = parse_isolated(path, PDF, limits=Limits(),
                                        memory_bytes=settings.PARSE_MEMORY_BYTES,
                                        cpu_seconds=120, wall_seconds=180)  # fmt: skip
                drafts.extend(
                    chunk_blocks(blocks, size=254, overlap=32, count=embedder.count_tokens)
                )

            order = (floor, ours) if round_number % 2 == 0 else (ours, floor)
            for step in order:
                started = time.perf_counter()
                step()
                elapsed = time.perf_counter() - started
                if step is floor:
                    floor_total += elapsed
                else:
                    ours_total += elapsed
        floor_times.append(floor_total)
        our_times.append(ours_total)
    floor_parse = pages / statistics.median(floor_times)
    ours_parse = pages / statistics.median(our_times)

    texts = [d.text for d in drafts]
    started = time.perf_counter()
    raw_encode(embedder, texts)  # the floor: the model's own encode, in document order
    floor_embed = len(texts) / (time.perf_counter() - started)

    old_name = create_database()
    try:
        side = build_tenant("bench")
        document: Any = DocumentFactory(tenant=side.tenant, dataset=side.dataset)
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        with transaction.atomic():
            Chunk.all_tenants.filter(document=document).delete()
            Chunk.all_tenants.bulk_create(
                [Chunk(tenant=side.tenant, dataset=side.dataset, document=document, ordinal=i,
                       text=d.text, token_count=d.token_count, char_start=d.char_start,
                       char_end=d.char_end, embedding=v, embedding_model=embedder.model)
                 for i, (d, v) in enumerate(zip(drafts, vectors, strict=True))],
                batch_size=500,
            )  # fmt: skip
        ours_embed = len(texts) / (time.perf_counter() - started)
    finally:
        destroy_database(old_name)

    print(f"pdfs={len(files)} pages={pages} chunks={len(texts)} parse rounds={ROUNDS} "
          f"python={sys.version.split()[0]}")  # fmt: skip
    print("| stage | ours | floor | overhead (floor rate / our rate) |")
    print("|---|---|---|---|")
    print(
        f"| parse+chunk | {ours_parse:.1f} pages/s | {floor_parse:.1f} pages/s (raw pdfplumber) | {floor_parse / ours_parse:.2f}x |"
    )
    print(
        f"| embed+store | {ours_embed:.1f} chunks/s | {floor_embed:.1f} chunks/s (raw encode) | {floor_embed / ours_embed:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

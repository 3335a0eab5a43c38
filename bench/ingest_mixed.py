"""Issue 4's acceptance run: 100 mixed documents uploaded at once, plus generated bombs, through
the API to a real Celery worker (concurrency 2, as `make run` starts it), with the worker's memory
sampled throughout.

Documents: 20 each of PDF, DOCX, Markdown, JSON and HTML from ``../shared/corpora`` (files of at
most 2 MB, evenly spaced in path order, so every source folder is represented), and six hostile
files made here: a PDF whose stream inflates to 2 GB, a 2,001-page PDF, an encrypted PDF, a
DOCX zip bomb, a DOCX "billion laughs" and 10,000-deep JSON. Memory: every 0.25 s the PSS
(proportional set size: shared pages split between the processes sharing them) of the worker's
whole process tree — Celery's parent, its pool children, the parser zygote and its parse
children — and the largest RSS of any one of them.

Run: ``make bench-mixed`` (``BENCH_MIXED_PER_KIND`` to change the sample; a fresh database
``bench_mixed``). Prints the outcomes by kind and code, elapsed time and peak memory.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

from bench import create_database, destroy_database, setup_django

ROOT = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("CORPORA", ROOT.parent / "shared" / "corpora"))
PER_KIND = int(os.environ.get("BENCH_MIXED_PER_KIND", "20"))
KINDS = {"pdf": (".pdf",), "docx": (".docx",), "markdown": (".md", ".markdown"),
         "json": (".json",), "html": (".html", ".htm")}  # fmt: skip
MAX_BYTES = 2 * 1024 * 1024


def corpus_sample() -> list[tuple[str, Path]]:
    picked: list[tuple[str, Path]] = []
    for kind, suffixes in KINDS.items():
        files = sorted(
            p
            for p in (CORPORA / kind).rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes and p.stat().st_size <= MAX_BYTES
        )
        step = max(1, len(files) // PER_KIND)
        picked += [(kind, p) for p in files[::step][:PER_KIND]]
    return picked


def hostile() -> list[tuple[str, str, bytes]]:
    from knowledge.tests.fixtures import (
        deep_json,
        make_docx_laughs,
        make_encrypted_pdf,
        make_pdf,
        make_pdf_flate_bomb,
        make_zip_bomb,
    )

    return [
        ("bomb", "inflates-2gb.pdf", make_pdf_flate_bomb(2048)),
        ("bomb", "pages-2001.pdf", make_pdf(["p"] * 2001)),
        ("bomb", "encrypted.pdf", make_encrypted_pdf(["secret"])),
        ("bomb", "zip-bomb.docx", make_zip_bomb(300)),
        ("bomb", "laughs.docx", make_docx_laughs()),
        ("bomb", "deep.json", deep_json()),
    ]


def tree(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in kB, or zeros for a process that is gone."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def role(pid: int) -> str:
    """``worker`` (Celery's parent and pool children) or ``parser`` (zygote, parse children)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    return (
        "parser"
        if b"knowledge.parsers.zygote" in argv or b"knowledge.parsers.sandbox" in argv
        else "worker"
    )


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.peak_pss = self.processes = self.last_pss = 0
        self.peak_rss: Counter[str] = Counter()  # largest RSS of one process, by role

    def run(self) -> None:
        while not self.stop.wait(0.25):
            pids = tree(self.pid)
            sizes = [(role(pid), *memory_kb(pid)) for pid in pids]
            self.last_pss = sum(pss for _, pss, _ in sizes)
            self.peak_pss = max(self.peak_pss, self.last_pss)
            for kind, _, rss in sizes:
                self.peak_rss[kind] = max(self.peak_rss[kind], rss)
            self.processes = max(self.processes, len(pids))


def main() -> int:
    setup_django()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.test import APIClient

    from knowledge.models import Dataset, Document, DocumentStatus
    from tenants.models import Role, Tenant
    from tenants.services import Actor, api_key_create
    from tests.processes import VENV_BIN, child_env, running, wait_for

    old_name = create_database("bench_mixed")
    tenant = Tenant.objects.create(slug="mixed", name="mixed",
                                   default_rate_limit_per_minute=1_000_000)  # fmt: skip
    dataset = Dataset.objects.for_tenant(tenant).create(tenant=tenant, name="mixed")
    _key, secret = api_key_create(tenant=tenant, actor=Actor.system("bench"), role=Role.ADMIN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    uploads = [(kind, p.name, p.read_bytes()) for kind, p in corpus_sample()] + hostile()
    logs = ROOT / ".data" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [str(VENV_BIN / "celery"), "-A", "chatbot_site", "worker", "--loglevel=WARNING",
            "--concurrency=2", "--pool=prefork", "--without-mingle", "--without-gossip",
            "-n", f"bench-mixed-{os.getpid()}@%h"]  # fmt: skip
    kinds: dict[str, str] = {}
    refused: Counter[tuple[str, int]] = Counter()
    with running(argv, child_env(LOG_LEVEL="WARNING"), logs / "mixed-worker.log") as worker:
        time.sleep(3)  # the worker loads the embedding model before taking work
        sampler = Sampler(worker.pid)
        sampler.start()
        idle_pss = 0
        started = time.perf_counter()
        for kind, name, data in uploads:
            response = client.post(
                f"/v1/datasets/{dataset.pk}/documents",
                {"file": SimpleUploadedFile(name, data)},
                format="multipart",
            )
            if response.status_code in (200, 202):
                kinds[response.json()["id"]] = kind
            else:
                refused[(kind, response.status_code)] += 1
        uploaded = time.perf_counter() - started
        documents = Document.all_tenants.filter(pk__in=list(kinds))

        def finished() -> bool:
            return not documents.filter(
                status__in=[DocumentStatus.QUEUED, DocumentStatus.PROCESSING]
            ).exists()

        wait_for(finished, timeout=1800, what="every document to finish")
        elapsed = time.perf_counter() - started
        time.sleep(1)
        idle_pss = sampler.last_pss
        sampler.stop.set()
        alive = worker.poll() is None

    outcomes: Counter[tuple[str, str]] = Counter()
    chunks = 0
    for row in documents.values("id", "status", "error_code", "chunk_count"):
        kind = kinds[str(row["id"])]
        outcomes[(kind, row["error_code"] or row["status"])] += 1
        chunks += row["chunk_count"] or 0
        if row["status"] == "ready" and not row["chunk_count"]:
            print(f"ready without chunks: {row['id']}")
    print(f"\n{len(uploads)} uploads in {uploaded:.1f} s; all final after {elapsed:.1f} s; "
          f"{chunks} chunks; worker alive after the run: {alive}")  # fmt: skip
    print("\n| kind | outcome | documents |\n|---|---|---|")
    for (kind, outcome), count in sorted(outcomes.items()):
        print(f"| {kind} | {outcome} | {count} |")
    for (kind, code), count in sorted(refused.items()):
        print(f"| {kind} | refused at upload ({code}) | {count} |")
    print(f"\nworker tree: up to {sampler.processes} processes; peak PSS "
          f"{sampler.peak_pss / 1024:.0f} MB (idle after the run {idle_pss / 1024:.0f} MB); "
          f"largest RSS of one worker process {sampler.peak_rss['worker'] / 1024:.0f} MB, "
          f"of one parser process {sampler.peak_rss['parser'] / 1024:.0f} MB")  # fmt: skip
    destroy_database(old_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU cost of the injection detectors and of the output guard's canary check, this checkout
against another revision, timed alternately in one process (docs/GUARDRAILS.md).

``python -m bench.guard_cost --against REV [--rounds N] [--corpora DIR]`` loads
``knowledge/injection.py`` and ``conversations/guardrails.py`` as they were at ``REV`` (``git
show``) beside this checkout's, then times, round after round with the order swapped each
round: ``detect_passage`` per 1,500-character chunk of README.md, docs/*.md and the corpora's
Markdown, HTML and JSON files; ``detect`` per question of our evaluation sets; and, per
relayed piece of an English answer, ``CanaryForms.seen_in`` (4-character pieces) and
``OutputGuard.feed`` (and the latter for a Thai answer). CPU time of this process (``time.process_time``), so that other jobs on
a shared machine move the figures less than wall time would; medians and minima printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import django

ROOT = Path(__file__).resolve().parent.parent
TYPES = {".md": "text/markdown", ".html": "text/html", ".json": "application/json"}
ANSWER = (
    "Plans renew every year on the date you first subscribed. You can change the plan from "
    "the billing page; refunds are prorated for the unused months [1]. "
) * 40
# A Thai answer (no spaces between words: released as it comes since 2026-12-07, evening).
ANSWER_THAI = (
    "แผนรายปีจะต่ออายุโดยอัตโนมัติในวันที่คุณสมัครครั้งแรกคุณสามารถเปลี่ยนแผนได้ที่หน้าการเรียกเก็บเงิน"
    "และจะได้รับเงินคืนตามสัดส่วนของเดือนที่ไม่ได้ใช้[1] "
) * 20


def load_at(rev: str, path: str, name: str, into: Path) -> ModuleType:
    git = shutil.which("git") or "git"
    source = subprocess.run(  # noqa: S603 - git show of a revision the operator names
        [git, "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    file = into / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path} at {rev}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def chunks(corpora: Path) -> list[str]:
    from knowledge.parsers import Limits, ParseError, parse

    texts = [p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    for kind in ("markdown", "html", "json"):
        for path in sorted((corpora / kind).rglob("*")):
            content_type = TYPES.get(path.suffix.lower())
            if content_type is None or path.stat().st_size > 2_000_000:
                continue
            try:
                blocks = parse(content_type, path.read_bytes(), Limits())
            except (ParseError, ValueError):
                continue
            texts.append("\n".join(b.text for b in blocks))
    return [t[i : i + 1500] for t in texts for i in range(0, len(t), 1500)]


def questions() -> list[str]:
    files = [*(ROOT / "knowledge/evaldata").glob("*.jsonl"),
             *(ROOT / "conversations/evaldata").glob("*.jsonl")]  # fmt: skip
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    return [
        str(r.get("text") or r.get("question")) for r in rows if r.get("text") or r.get("question")
    ]


def per_item(run: Callable[[], Any], items: int) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) / items * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    args = parser.parse_args(argv)
    django.setup()
    from conversations import guardrails
    from knowledge import injection

    with tempfile.TemporaryDirectory() as tmp:
        old_injection = load_at(args.against, "knowledge/injection.py", "old_injection", Path(tmp))
        old_guardrails = load_at(args.against, "conversations/guardrails.py", "old_guardrails",
                                 Path(tmp))  # fmt: skip
    # The shipped classifier, for both (the old module looks for it beside its copy).
    setattr(old_injection, "MODEL_PATH", injection.MODEL_PATH)  # noqa: B010
    passages, asked = chunks(args.corpora), questions()
    pieces = [ANSWER[i : i + 4] for i in range(0, len(ANSWER), 4)]
    thai = [ANSWER_THAI[i : i + 4] for i in range(0, len(ANSWER_THAI), 4)]
    canary = guardrails.new_canary()

    def cases(inj: ModuleType, guard: ModuleType) -> dict[str, Callable[[], float]]:
        def seen() -> None:
            forms = guard.CanaryForms(canary)
            for piece in pieces:
                forms.seen_in(piece)

        def feed(pieces: list[str] = pieces) -> None:
            output = guard.OutputGuard(canary=canary, hosts=("docs.example.org",))
            for piece in pieces:
                output.feed(piece)
            output.flush()

        return {
            f"detect_passage, µs per chunk ({len(passages)})": lambda: per_item(
                lambda: [inj.detect_passage(c) for c in passages], len(passages)
            ),
            f"detect, µs per question ({len(asked)})": lambda: per_item(
                lambda: [inj.detect(q) for q in asked], len(asked)
            ),
            f"CanaryForms.seen_in, µs per piece ({len(pieces)})": lambda: per_item(
                seen, len(pieces)
            ),
            f"OutputGuard.feed, µs per piece ({len(pieces)})": lambda: per_item(feed, len(pieces)),
            f"OutputGuard.feed, Thai answer, µs per piece ({len(thai)})": lambda: per_item(
                lambda: feed(thai), len(thai)
            ),
        }

    before, after = cases(old_injection, old_guardrails), cases(injection, guardrails)
    for name in before:
        runs: dict[str, list[float]] = {"before": [], "after": []}
        for round_ in range(args.rounds):
            order = [("before", before), ("after", after)][:: 1 if round_ % 2 == 0 else -1]
            for label, case in order:
                runs[label].append(case[name]())
        print(name, "  ".join(f"{label} median {statistics.median(v):.2f} min {min(v):.2f}"
                              for label, v in runs.items()))  # fmt: skip


if __name__ == "__main__":
    main()

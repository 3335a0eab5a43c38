"""Part (iii) of ``manage.py eval_guardrails``: PII detection scores (span overlap, same entity,
on Presidio's synthetic set, its entity names mapped to ours) and the search for raw values in
every sink after a chat run."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot_site import pii
from conversations.models import Message
from knowledge.management.commands.eval_retrieval import read_jsonl

PII_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}


def pii_scores(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Recall and precision per entity of ``pii.find`` on Presidio-style rows (a found span
    counts when it overlaps a gold span of the same entity)."""
    gold: Counter[str] = Counter()
    found: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for row in rows:
        spans = [
            (PII_TYPES[s["type"]], s["start"], s["end"])
            for s in row["spans"]
            if s["type"] in PII_TYPES
        ]
        guesses = pii.find(row["text"])
        for entity, start, end in spans:
            gold[entity] += 1
            found[entity] += any(
                g.entity == entity and g.start < end and start < g.end for g in guesses
            )
        for g in guesses:
            predicted[g.entity] += 1
            correct[g.entity] += any(
                e == g.entity and g.start < end and start < g.end for e, start, end in spans
            )
    ratio: Callable[[int, int], str] = lambda a, b: f"{a / b:.3f}" if b else "n/a"  # noqa: E731
    return {
        e: {
            "recall": ratio(found[e], gold[e]),
            "precision": ratio(correct[e], predicted[e]),
            "gold": gold[e],
        }
        for e in pii.ENTITIES
    }


# Ours: sentences in Chinese, Japanese, Korean and Thai with addresses written in those scripts
# (written 2026-12-07 before the boundaries were tuned on the tune half).
UNSPACED = Path(__file__).resolve().parents[2] / "evaldata" / "pii_unspaced_addresses.jsonl"


def unspaced_scores(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per split: sentences, those whose every address a span covers whole, and those masked
    exactly (each address, and nothing else, replaced by "[EMAIL]": the words kept)."""
    scores: dict[str, dict[str, int]] = {}
    for row in rows:
        text, addresses = row["text"], row["addresses"]
        spans = pii.find(text, ["EMAIL"])
        expected = text
        for address in addresses:
            expected = expected.replace(address, "[EMAIL]", 1)
        starts = [text.index(address) for address in addresses]
        whole = all(
            any(s.start <= at and at + len(a) <= s.end for s in spans)
            for at, a in zip(starts, addresses, strict=True)
        )
        score = scores.setdefault(row["split"], {"n": 0, "whole": 0, "exact": 0})
        score["n"] += 1
        score["whole"] += whole
        score["exact"] += pii.mask(text, ["EMAIL"]) == expected
    return scores


def _from_generated(row: dict[str, Any]) -> dict[str, Any]:
    """A row of Presidio's generated_small.json in the synth_dataset_v2.jsonl shape."""
    spans = [
        {"type": s["entity_type"], "start": s["start_position"], "end": s["end_position"]}
        for s in row["spans"]
    ]
    return {"text": row["full_text"], "spans": spans}


def pii_report(command: Any, logs: io.StringIO) -> None:
    """Part (iii) of the eval, run by ``command`` (its corpora, output, bot and fake LLM):
    the detection table, then every held-out sentence with a target entity sent through chat
    and the raw values searched for in stored messages, provider requests and logs."""
    rows = read_jsonl(command.corpora / "pii/presidio-research/synth_dataset_v2.jsonl")
    command.out("\n## PII detection (Presidio synthetic set; span overlap, same entity)\n")
    command.out(
        "| entity | dev recall | dev precision | held-out recall | held-out precision | held-out spans |"
    )
    command.out("|---|---|---|---|---|---|")
    scores = {
        name: pii_scores(part) for name, part in (("dev", rows[:1000]), ("heldout", rows[1000:]))
    }
    for entity in pii.ENTITIES:
        dev, held = scores["dev"][entity], scores["heldout"][entity]
        command.out(
            f"| {entity} | {dev['recall']} | {dev['precision']} | {held['recall']} "
            f"| {held['precision']} | {held['gold']} |"
        )
    # A second set nothing was tuned on: Presidio's generated_small.json (100 sentences
    # generated apart from the synthetic set), its spans converted.
    small_path = command.corpora / "pii/presidio-research/generated_small.json"
    if small_path.is_file():
        small = [_from_generated(r) for r in json.loads(small_path.read_text(encoding="utf-8"))]
        second = pii_scores(small)
        command.out(f"\nSecond held-out set (generated_small.json, {len(small)} sentences):\n")
        command.out("| entity | recall | precision | spans |")
        command.out("|---|---|---|---|")
        for entity in pii.ENTITIES:
            e = second[entity]
            command.out(f"| {entity} | {e['recall']} | {e['precision']} | {e['gold']} |")
    unspaced = unspaced_scores(read_jsonl(UNSPACED))
    command.out(
        f"\nAddresses in scripts without spaces ({UNSPACED.parent.name}/{UNSPACED.name}; "
        "exact: the address, and nothing else, masked):\n"
    )
    command.out("| split | sentences | address masked whole | masked exactly |")
    command.out("|---|---|---|---|")
    for split in ("tune", "heldout"):
        u = unspaced[split]
        command.out(f"| {split} | {u['n']} | {u['whole']} | {u['exact']} |")
    # Every held-out sentence with a target entity goes through chat; then search the sinks.
    bot = command.bot(
        "pii bot", scope={"answer_without_context": True, "min_relevance": 0.0}, datasets=[]
    )
    sentences = [r for r in rows[1000:] if any(s["type"] in PII_TYPES for s in r["spans"])]
    values = [s["value"] for r in sentences for s in r["spans"] if s["type"] in PII_TYPES]
    requests_before = len(command.fake.requests)
    for row in sentences:
        command.ask(bot, row["text"])
    stored = "\n".join(
        Message.objects.for_tenant(command.tenant)
        .filter(conversation__bot=bot)
        .values_list("content", flat=True)
    )
    provider = json.dumps(command.fake.requests[requests_before:], ensure_ascii=False)
    logged = logs.getvalue()
    command.out(
        f"\nRaw PII values (of {len(values)} in {len(sentences)} held-out sentences sent as questions) found afterwards in:"
    )
    for sink, text in (
        ("stored messages", stored),
        ("provider requests", provider),
        ("log lines", logged),
    ):
        found = [v for v in values if v in text]
        command.out(f"- {sink}: {len(found)}" + (f" (e.g. {found[:3]})" if found else ""))

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


# Ours (2026-12-07, night): phone numbers in national formats with and without a phone word,
# rows of numbers that are no phone (sizes, versions, dates, coordinates, prices, ISBNs, table
# rows, statistics) and e-mail addresses in Chinese, Japanese, Korean and Thai sentences after
# words that are not in the cue list; alternate rows tune / held out, written and committed
# before the rules were changed.
NUMBERS = Path(__file__).resolve().parents[2] / "evaldata" / "pii_numbers.jsonl"
# A second such set (2026-12-07, late night), written and committed before the rules it scores
# were changed: Indian mobiles written 5+5 with no phone word, two 5-digit groups that are
# none, SVG viewBox and crop rows, rows of close scores in pairs, trial register numbers
# (EudraCT); alternate rows tune / held out.
NUMBERS_2 = NUMBERS.with_name("pii_numbers_2.jsonl")
# Benign text with no labelled PII: the SciFact and SQuAD corpora (a few SciFact abstracts give
# their authors' phone numbers: those are counted too, so the count is an upper bound).
BENIGN_CORPORA = ("eval/scifact/corpus.jsonl", "eval/squad2-dev-sample/corpus.jsonl")


def numbers_scores(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per split: rows, rows masked exactly (each labelled value, and nothing else, replaced by
    its mask), and per entity the labelled values a span of that entity overlaps (recall) and
    the spans that overlap a labelled value of their entity (precision); ``benign_phone``: the
    PHONE spans in rows with no label."""
    scores: dict[str, dict[str, Any]] = {}
    for row in rows:
        text = row["text"]
        score = scores.setdefault(
            row["split"], {"n": 0, "exact": 0, "benign_phone": 0, "counts": Counter()}
        )
        counts = score["counts"]
        gold = []
        expected = text
        for entity, value in row["pii"]:
            at = text.index(value)
            gold.append((entity, at, at + len(value)))
            expected = expected.replace(value, f"[{entity}]", 1)
        spans = pii.find(text)
        for entity, start, end in gold:
            counts[entity, "gold"] += 1
            counts[entity, "found"] += any(
                s.entity == entity and s.start < end and start < s.end for s in spans
            )
        for s in spans:
            counts[s.entity, "predicted"] += 1
            counts[s.entity, "correct"] += any(
                e == s.entity and s.start < end and start < s.end for e, start, end in gold
            )
        score["n"] += 1
        score["exact"] += pii.mask(text) == expected
        score["benign_phone"] += not gold and sum(s.entity == "PHONE" for s in spans)
    return scores


def benign_phones(corpora: Path) -> tuple[int, int, Counter[str]]:
    """Texts read, and the PHONE spans :func:`pii.find` reports in them (by value)."""
    texts = 0
    found: Counter[str] = Counter()
    for name in BENIGN_CORPORA:
        path = corpora / name
        if not path.is_file():
            continue
        for row in read_jsonl(path):
            text = f"{row.get('title', '')}\n{row['text']}"
            texts += 1
            found.update(text[s.start : s.end] for s in pii.find(text, ["PHONE"]))
    return texts, sum(found.values()), found


def numbers_report(command: Any) -> None:
    """Our number and CJK e-mail set, and the PHONE spans in benign corpora."""
    for path, what in (
        (NUMBERS, "Phone numbers, rows of numbers and CJK addresses"),
        (NUMBERS_2, "Two-group mobiles, viewBox rows, close scores, register numbers"),
    ):
        scores = numbers_scores(read_jsonl(path))
        command.out(
            f"\n{what} ({path.parent.name}/{path.name}; exact: each value, and nothing else,"
            " masked):\n"
        )
        command.out(
            "| split | rows | masked exactly | PHONE recall | PHONE precision | EMAIL recall "
            "| EMAIL precision | false PHONE spans in unlabelled rows |"
        )
        command.out("|---|---|---|---|---|---|---|---|")
        for split in ("tune", "heldout"):
            s = scores[split]
            c = s["counts"]
            cells = []
            for entity in ("PHONE", "EMAIL"):
                cells.append(f"{c[entity, 'found']}/{c[entity, 'gold']}")
                cells.append(f"{c[entity, 'correct']}/{c[entity, 'predicted']}")
            command.out(
                f"| {split} | {s['n']} | {s['exact']} | {' | '.join(cells)} "
                f"| {s['benign_phone']} |"
            )
    texts, total, found = benign_phones(command.corpora)
    command.out(
        f"\nPHONE spans in {texts} benign texts ({', '.join(BENIGN_CORPORA)}): {total}"
        + (f" (e.g. {[v for v, _ in found.most_common(8)]})" if found else "")
    )


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
    numbers_report(command)
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

"""What the HTML parser keeps of every page of a corpus folder, and how much of it is menus.

    PYTHONPATH=. DJANGO_SETTINGS_MODULE=chatbot_site.settings.dev \\
        .venv/bin/python -m bench.html_boilerplate [FOLDER] [--files]

For each file (its type by ``detect``, then ``knowledge.parsers.parse``): the outcome, the
blocks and non-space characters kept, and how many kept blocks are link-dense — a ``<p>``,
``<li>``, ``<dd>``/``<dt>`` or table row of the page with more than half of its characters
inside ``<a>`` (found in the page itself with lxml, whichever parser version
runs, and matched to the kept blocks by their text).

The ``readability-test-pages`` come with Readability's extraction (``expected.html``): for
each ``source.html`` the words kept that are in no expected text (boilerplate kept) and the
expected words kept (main content kept), as multisets. They are split in two, fixed before any
rule was tuned (docs/CORPUS.md, 2026-12-08): TUNE, the pages at even positions of the sorted
names, and HELD_OUT, the others; report the two apart. ``--files`` prints a line per file.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import django

LINK_DENSE_TAGS = ("p", "li", "dd", "dt", "tr")
# A word: a run of letters or digits, or one CJK character (those scripts put no spaces).
_CJK = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af"
WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _chars(text: str) -> int:
    return len("".join(text.split()))


def link_dense_texts(data: bytes) -> set[str]:
    """The texts of the page's link-dense blocks, as the parser would write them."""
    import lxml.html

    from knowledge.parsers.text import decode

    try:
        root = lxml.html.document_fromstring(decode(data))
    except Exception:
        return set()
    found = set()
    for element in root.iter(*LINK_DENSE_TAGS):
        links = [a for a in element.iter("a") if _clean(a.text_content())]
        text = element.text_content()
        total = _chars(text)
        if not links or not total:
            continue
        inside = sum(_chars(a.text_content()) for a in links)
        if inside / total > 0.5:
            if element.tag == "tr":
                cells = [_clean(c.text_content()) for c in element if c.tag in ("td", "th")]
                found.add(" | ".join(cells))
            else:
                found.add(_clean(text))
    return found


def words(text: str) -> Counter[str]:
    return Counter(word.lower() for word in WORD.findall(text))


def expected_words(path: Path) -> Counter[str]:
    import lxml.html

    from knowledge.parsers.text import decode

    return words(lxml.html.document_fromstring(decode(path.read_bytes())).text_content())


def run(folder: Path, per_file: bool) -> dict[str, Any]:
    from knowledge.parsers import HTML, Limits, ParseError, parse
    from knowledge.parsers.detect import detect

    totals: dict[str, Any] = {"files": 0, "outcomes": Counter(), "blocks": 0, "chars": 0}
    totals["link_dense_blocks"] = 0
    pages = sorted(p.parent.name for p in folder.glob("readability-test-pages/*/source.html"))
    split = {name: ("tune" if i % 2 == 0 else "held_out") for i, name in enumerate(pages)}
    readability: dict[str, dict[str, Any]] = {
        part: {"pages": 0, "kept_words": 0, "extra_words": 0, "expected_words": 0, "hit": 0}
        for part in ("tune", "held_out")
    }
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = str(path.relative_to(folder))
        totals["files"] += 1
        content_type = detect(data, path.name)
        if content_type is None:
            totals["outcomes"]["refused"] += 1
            continue
        try:
            blocks = parse(content_type, data, Limits())
        except ParseError as exc:
            totals["outcomes"][exc.code] += 1
            if per_file:
                print(json.dumps({"file": name, "outcome": exc.code}))
            continue
        texts = [block.text for block in blocks]
        outcome = "ready" if any(t.strip() for t in texts) else "no_text"
        totals["outcomes"][outcome] += 1
        dense = link_dense_texts(data) if content_type == HTML else set()
        kept_dense = sum(1 for t in texts if _clean(t) in dense)
        chars = sum(_chars(t) for t in texts)
        totals["blocks"] += len(texts)
        totals["chars"] += chars
        totals["link_dense_blocks"] += kept_dense
        line: dict[str, Any] = {"file": name, "outcome": outcome, "blocks": len(texts)}
        line |= {"chars": chars, "link_dense_blocks": kept_dense}
        if path.name == "source.html" and path.parent.name in split:
            part = readability[split[path.parent.name]]
            kept = words(" ".join(b.text for b in blocks))
            expected = expected_words(path.parent / "expected.html")
            extra = sum((kept - expected).values())
            hit = sum((kept & expected).values())
            part["pages"] += 1
            part["kept_words"] += sum(kept.values())
            part["extra_words"] += extra
            part["expected_words"] += sum(expected.values())
            part["hit"] += hit
            line |= {"split": split[path.parent.name], "extra_words": extra, "expected_hit": hit}
            line["expected_words"] = sum(expected.values())
        if per_file:
            print(json.dumps(line, ensure_ascii=False))
    for part in readability.values():
        part["recall"] = round(part["hit"] / max(part["expected_words"], 1), 4)
        part["precision"] = round(part["hit"] / max(part["kept_words"], 1), 4)
    totals["outcomes"] = dict(totals["outcomes"])
    return {"totals": totals, "readability": readability}


def main() -> None:
    django.setup()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    folder = Path(args[0] if args else "../shared/corpora/html")
    print(json.dumps(run(folder, "--files" in sys.argv), indent=1))


if __name__ == "__main__":
    main()

"""What ``chatbot_site.pii`` costs per call, against another revision of it in the same run.

``mask`` on a 200-character English message without digits, "@" or " at ", one with six
" at " words, one with four entities, and a 4 kB log line; then the streaming loop of the
output guard (``hold_from``, the released text masked) per 4-character piece of a 1,000-
character English answer with an " at " every 60 characters and one without, of a
Chinese answer of about 1,000 characters and of a Thai one; and ``mask`` on a Chinese message
with two addresses written in Chinese; ``mask`` on a message with rows of numbers, ranges and
phones, and the log processor on an event with private-network addresses. The revision
``BENCH_PII_AGAINST`` (default ``HEAD``) of ``chatbot_site/pii.py`` (the package
``chatbot_site/pii/`` since it was split) is loaded from git next to the working tree's; the
two are timed alternately, ``BENCH_PII_ROUNDS`` rounds (default 40), best round, µs per call. Nothing else is imported: no database, no Django.

    BENCH_PII_AGAINST=22c4f46 .venv/bin/python -m bench.pii_mask
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

AGAINST = os.environ.get("BENCH_PII_AGAINST", "HEAD")
ROUNDS = int(os.environ.get("BENCH_PII_ROUNDS", "40"))
ROOT = Path(__file__).resolve().parent.parent

PLAIN = (
    "Hi, I would like to know how the annual plan renews and whether I can change the "
    "number of seats later on. Our team grew from five to twelve people over the summer, thanks!"
)[:200]
WITH_AT = (
    "Hi, we met at the conference and I looked at the docs at length. Can you tell me what "
    "happens at renewal time and whether seats added at mid-year are billed at the full rate? Thanks"
)[:200]
FOUR = (
    "I'm jane@example.org, call +44 20 7946 0958; card 4111 1111 1111 1111 and IBAN "
    "DE89 3704 0044 0532 0130 00. When does the annual plan renew for our team of twelve?"
)[:200]
LOG = json.dumps(
    {
        "event": "chat_turn",
        "bot_id": "94b8f173-290f-4e25-ba3e-28924cb92159",
        "text": "User asked at 10:20 about renewal of plan 2024-01-15 for 12 seats; reply sent to "
        "jane@example.org from 203.0.113.9, latency_ms=54 tokens=42. " * 40,
    }
)[:4096]
ANSWER_AT = (
    "Annual plans renew on the date you first subscribed. You can change the number of seats at "
    "any time in the billing settings; the change is billed at the next renewal. If you have "
    "questions, look at the billing page or ask your administrator at the start of the month. "
) * 4
ANSWER = (
    "Annual plans renew on the date you first subscribed. You can change the number of seats "
    "in the billing settings whenever you like; the change is billed with the next renewal. If "
    "you have questions, open the billing page or ask your administrator for help this month. "
) * 4

# A Chinese answer (no spaces: the hold keeps a run of letters an "@" may still follow).
ANSWER_CJK = (
    "年度计划在您首次订阅的日期自动续订。您可以随时在账单设置中更改席位数量\uff0c更改将在下次续订时计费。"
    "如有疑问\uff0c请查看账单页面或联系您的管理员。"
) * 12
# A Thai answer (no spaces, vowels and tones as marks) and a Chinese message with two
# addresses in Chinese and a row of small numbers (since 2026-12-07, evening).
ANSWER_THAI = (
    "แผนรายปีจะต่ออายุโดยอัตโนมัติในวันที่คุณสมัครครั้งแรกคุณสามารถเปลี่ยนแผนได้ที่หน้าการเรียกเก็บเงิน"
    "และจะได้รับเงินคืนตามสัดส่วนของเดือนที่ไม่ได้ใช้ "
) * 7
CJK_ADDRESSES = (
    "请联系张伟@例子.中国或发邮件至客服@公司.网站。我们的批量大小是32 64 128\uff0c谢谢。"
    "续订问题请查看账单页面\uff0c退款会在五个工作日内退回原卡。如有疑问请联系管理员。"
)

# Rows of numbers, ranges and phones in several national formats (since 2026-12-07, night), and
# a log event with private-network addresses (the provider's URL, the database).
NUMBERS = (
    "Sizes 100 200 300 400 and 36 38 40 42 44; CI 1457.60-2761.80, 330 000-701 200 adults. "
    "Call 020 7946 0958, 06 12 34 56 78 or Lars on 12 34 56 78; Zentrale 089 / 12 34 56 78."
)
LOG_EVENT = {
    "event": "HTTP Request: POST http://10.0.3.7:8000/v1/chat/completions",
    "db": "172.18.0.3:5432",
    "text": "client 203.0.113.9 asked about plan 2024-01-15 for 12 seats " * 8,
}


def load_revision(revision: str) -> ModuleType:
    """``chatbot_site/pii.py`` (one module before the split) or the package ``chatbot_site/pii/``
    at ``revision``, loaded as ``pii_against``."""
    folder = Path(tempfile.mkdtemp())
    listed = subprocess.run(  # noqa: S603 (git, with a revision the operator names)
        ["git", "ls-tree", "--name-only", revision, "chatbot_site/pii/"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    names = [name for name in listed if name.endswith(".py")] or ["chatbot_site/pii.py"]
    for name in names:
        source = subprocess.run(  # noqa: S603
            ["git", "show", f"{revision}:{name}"],  # noqa: S607
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (folder / Path(name).name).write_text(source, encoding="utf-8")
    package = (folder / "__init__.py").exists()
    spec = importlib.util.spec_from_file_location(
        "pii_against",
        folder / ("__init__.py" if package else "pii.py"),
        submodule_search_locations=[str(folder)] if package else None,
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pii_against"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def stream(pii: Any, text: str) -> None:
    """The output guard's PII work: each piece held back while it may grow, the rest masked."""
    pending = ""
    for i in range(0, len(text), 4):
        pending += text[i : i + 4]
        cut = pii.hold_from(pending)
        pii.mask(pending[:cut])
        pending = pending[cut:]
    pii.mask(pending)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from chatbot_site import pii as current

    against = load_revision(AGAINST)
    cases: list[tuple[str, Any, int]] = [
        ("mask, 200-char message without digits, @ or ' at '", lambda p: p.mask(PLAIN), 2000),
        ("mask, 200-char message with six ' at ' words", lambda p: p.mask(WITH_AT), 2000),
        ("mask, 200-char message with four entities", lambda p: p.mask(FOUR), 200),
        ("mask, 4 kB log line", lambda p: p.mask(LOG), 20),
        ("streamed answer with ' at ' words, per 4-char piece", lambda p: stream(p, ANSWER_AT), 3),
        ("streamed answer without them, per 4-char piece", lambda p: stream(p, ANSWER), 3),
        ("streamed Chinese answer, per 4-char piece", lambda p: stream(p, ANSWER_CJK), 3),
        ("streamed Thai answer, per 4-char piece", lambda p: stream(p, ANSWER_THAI), 3),
        ("mask, Chinese message with two addresses", lambda p: p.mask(CJK_ADDRESSES), 200),
        ("mask, 170-char message with number rows and phones", lambda p: p.mask(NUMBERS), 200),
        (
            "mask_pii_processor, log event with private addresses",
            lambda p: p.mask_pii_processor(None, "info", dict(LOG_EVENT)),
            200,
        ),
    ]
    print(f"| chatbot_site.pii | {AGAINST} | working tree |")
    print("|---|---|---|")
    for name, call, number in cases:
        answer = ANSWER_CJK if "Chinese" in name else ANSWER_THAI if "Thai" in name else ANSWER
        pieces = len(answer) // 4 if name.startswith("streamed") else 1
        best = {"against": float("inf"), "current": float("inf")}
        for _ in range(ROUNDS):
            for label, module in (("against", against), ("current", current)):
                seconds = timeit.timeit(functools.partial(call, module), number=number)
                best[label] = min(best[label], seconds / number / pieces * 1e6)
        print(f"| {name} | {best['against']:.2f} µs | {best['current']:.2f} µs |")


if __name__ == "__main__":
    main()

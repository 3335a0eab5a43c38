"""What indexing Chinese, Japanese and Korean as character bigrams costs a chunk's stored
``search_vector`` (``to_tsvector(language, knowledge_cjk_bigrams(text))``, migration
knowledge 0013), against the floor ``to_tsvector(language, text)``, in the same run.

Computed in PostgreSQL over ``BENCH_TSV_ROWS`` (default 20,000) distinct texts of each kind (a
row number appended, so that nothing is folded into a constant): a 1,200-character English
passage of README.md (it has a dash: non-ASCII), the same with the dash made "?", and a
500-character Chinese one. ``BENCH_TSV_ROUNDS`` rounds (default 3),
the two expressions taking turns; medians, µs per text.

    DJANGO_SETTINGS_MODULE=chatbot_site.settings.test .venv/bin/python -m bench.tsvector
"""

from __future__ import annotations

import os
import statistics
import time

from bench import create_database, destroy_database, setup_django

ROWS = int(os.environ.get("BENCH_TSV_ROWS", "20000"))
ROUNDS = int(os.environ.get("BENCH_TSV_ROUNDS", "3"))
CHINESE = "退款会在五个工作日内退回到原来的银行卡。如果超过十个工作日仍未收到退款，请联系客服。"  # noqa: RUF001
EXPRESSIONS = {
    "floor: to_tsvector(text)": "to_tsvector(%(config)s::regconfig, %(text)s || i::text)",
    "ours: to_tsvector(knowledge_cjk_bigrams(text))": (
        "to_tsvector(%(config)s::regconfig, knowledge_cjk_bigrams(%(text)s || i::text))"
    ),
}


def micros_per_text(expression: str, config: str, text: str, rows: int) -> float:
    from django.db import connection

    sql = f"SELECT count({expression}) FROM generate_series(1, %(rows)s) i"  # noqa: S608
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(sql, {"config": config, "text": text, "rows": rows})
        cursor.fetchone()
        return (time.perf_counter() - started) / rows * 1e6


def main() -> None:
    setup_django()
    from tests.processes import ROOT

    old = create_database("bench_tsvector")
    try:
        english = (ROOT / "README.md").read_text()[:1200]
        ascii_only = english.encode("ascii", "replace").decode()
        cases = (("english with a dash, 1,200 chars", "english", english, ROWS),
                 ("english, ASCII only, 1,200 chars", "english", ascii_only, ROWS),
                 ("chinese, 500 chars", "simple", CHINESE * 12, ROWS // 10))  # fmt: skip
        print(f"| text | expression | µs per text (median of {ROUNDS}) | ratio to floor |")
        print("|---|---|---|---|")
        for label, config, text, rows in cases:
            runs: dict[str, list[float]] = {name: [] for name in EXPRESSIONS}
            for _round in range(ROUNDS):
                for name, expression in EXPRESSIONS.items():
                    runs[name].append(micros_per_text(expression, config, text, rows))
            medians = {name: statistics.median(values) for name, values in runs.items()}
            floor = next(iter(medians.values()))
            for name, value in medians.items():
                print(f"| {label} | {name} | {value:.1f} | {value / floor:.2f}x |")
    finally:
        destroy_database(old)


if __name__ == "__main__":
    main()

"""knowledge 0013 (CJK bigrams) applied, reverted and applied again at scale, under load.

The database ``bench_upgrade_cjk`` on the embedded server (or ``DATABASE_URL``'s) is built once
at knowledge 0012 (``BENCH_REBUILD=1`` rebuilds it): ``BENCH_ROWS`` (160,000) chunks of 384-d in
20 tenants with the HNSW index and each dataset's own index, as bench.retrieval builds them,
~3% of them Chinese, Japanese or Korean (``BENCH_CJK_SHARE``), termstat kept by its triggers.
Then, while a reader (a tenant's 10 nearest chunks, a full-text query and the BM25 counts it
reads, in one transaction) and a writer (one chunk inserted, every 5th with CJK text) each run
every 50 ms on connections of their own, it times ``manage.py migrate`` to the head, back to
knowledge 0012 and to the head again (a database left at the head starts with the way back).
For each: the total, the reader's and the writer's longest call and errors, reads that found the
BM25 counts missing, and the chunk table's (and termstat's) locks stronger than a writer's, and
anyone waiting for one, as pg_locks showed them every 50 ms. After each: chunks whose
``search_vector`` is not the migration's expression, termstat rows that differ from a full
recount, and (at the head) CJK chunks found by ``knowledge.retrieval.search``.
``BENCH_CJK_TENANT`` (none; e.g. ``bench-2``): that tenant's chunks are all given CJK text
first (at knowledge 0012), a Chinese customer's dataset. ``BENCH_BLOCKER_SECONDS`` (0): a
transaction that inserted a chunk (an ingestion storing a large document) is open that long
when each migrate starts.

``BENCH_MIGRATION=headings``: the same for knowledge 0016 (the heading path in the full-text
vector), between 0015 and 0016, in the database ``bench_upgrade_headings``, where
``BENCH_HEADING_SHARE`` (1.0) of the chunks have a heading path (a document's title and a section
of it); checked after each: vectors not the migration's expression, termstat against a recount,
and chunks a question naming a heading finds by text. ``BENCH_PLAN=forward`` runs the way
forward only.

Command: ``DJANGO_SETTINGS_MODULE=chatbot_site.settings.test .venv/bin/python -m
bench.upgrade_cjk`` (the build takes ~6 minutes on 2 cores, each migration minutes; not part of
``make bench``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import setup_django

MIGRATION = os.environ.get("BENCH_MIGRATION", "cjk")
NAME = f"bench_upgrade_{MIGRATION}"
ROWS = int(os.environ.get("BENCH_ROWS", "160000"))
TENANTS = 20
CJK_SHARE = float(os.environ.get("BENCH_CJK_SHARE", "0.03"))
BLOCKER_SECONDS = float(os.environ.get("BENCH_BLOCKER_SECONDS", "0"))
CJK_TENANT = os.environ.get("BENCH_CJK_TENANT", "")
TICK = 0.05
ROOT = Path(__file__).resolve().parent.parent
HEADING_SHARE = float(os.environ.get("BENCH_HEADING_SHARE", "1.0"))
BEFORE, HEAD = {
    "cjk": ("0012_document_transient_failures", "0014_document_dataset_created"),
    "headings": ("0015_document_pipeline_version", "0016_chunk_search_vector_headings"),
}[MIGRATION]
BIGRAMS = "to_tsvector(language, knowledge_cjk_bigrams(text))"
EXPRESSIONS = {  # (before, at the head)
    "cjk": ("to_tsvector(language, text)", BIGRAMS),
    "headings": (
        BIGRAMS,
        f"({BIGRAMS} || setweight(to_tsvector(language,"
        " knowledge_cjk_bigrams(array_to_string(heading_path, ' '))), 'A'))",
    ),
}[MIGRATION]
SECTIONS = ["Billing", "Refunds", "Invoices", "Exports", "Webhooks", "Teams", "Security"]

# Support-page sentences; a CJK chunk is a dozen of them, in one language, sometimes with an
# English product word, as chunks of real manuals are (full-width commas: Chinese punctuation).
CHINESE = [
    "登录后台以后，在设置页面可以修改账户的密码和邮箱地址。",  # noqa: RUF001
    "如果付款失败，系统会在二十四小时内自动重试三次。",  # noqa: RUF001
    "退款申请提交后，通常需要五到七个工作日才能到账。",  # noqa: RUF001
    "东京塔附近的办公室负责处理亚洲地区的客户支持。",
    "每个团队最多可以邀请五十名成员，并为他们分配不同的角色。",  # noqa: RUF001
    "数据导出功能支持 CSV 和 JSON 两种格式。",
    "为了保护您的账户安全，我们建议开启两步验证。",  # noqa: RUF001
    "发票会在每个计费周期结束时发送到您的邮箱。",
    "上传的文档会被自动切分成段落，并建立全文索引。",  # noqa: RUF001
    "如果 Webhook 连续失败十次，它将被暂停。",  # noqa: RUF001
    "订阅续费前七天，系统会发送提醒邮件。",  # noqa: RUF001
    "搜索结果按照相关度排序，最相关的内容排在前面。",  # noqa: RUF001
]
JAPANESE = [
    "パスワードを忘れた場合は、ログイン画面の「再設定」を押してください。",
    "請求書は毎月一日に登録されたメールアドレスへ送信されます。",
    "東京タワーの近くにあるサポートセンターが平日に対応します。",
    "チームの管理者は、メンバーの権限をいつでも変更できます。",
    "アップロードしたファイルは自動的に検索できるようになります。",
    "返金の手続きには通常一週間ほどかかります。",
    "二段階認証を有効にすると、アカウントがより安全になります。",
    "エクスポートしたデータは CSV 形式でダウンロードできます。",
]
KOREAN = [
    "비밀번호를 잊으셨다면 로그인 화면에서 재설정을 눌러 주세요.",
    "청구서는 매달 첫째 날 등록된 이메일로 발송됩니다.",
    "환불은 보통 영업일 기준 오일에서 칠일이 걸립니다.",
    "팀 관리자는 언제든지 구성원의 권한을 변경할 수 있습니다.",
    "업로드한 문서는 자동으로 검색할 수 있게 됩니다.",
    "이단계 인증을 켜면 계정을 더 안전하게 보호할 수 있습니다.",
]
QUESTIONS = {"东京塔": "东京塔", "二段階認証": "二段階認証", "환불은": "환불은"}


def cjk_text(rng: Any) -> str:
    pool = [CHINESE, CHINESE, CHINESE, JAPANESE, JAPANESE, KOREAN][int(rng.integers(0, 6))]
    sentences = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(6, 16)))]
    return (" " if pool is KOREAN else "").join(sentences)


def texts(rng: Any, count: int) -> list[str]:
    """bench.retrieval's English-like chunks, CJK_SHARE of them Chinese, Japanese or Korean."""
    from bench.retrieval import chunk_texts

    chunks = chunk_texts(rng, count)
    for i in rng.choice(count, round(count * CJK_SHARE), replace=False):
        chunks[int(i)] = cjk_text(rng)
    return chunks


def heading_paths(rng: Any, count: int) -> list[str]:
    """HEADING_SHARE of the chunks under a heading path ("Admin guide 3", "Refunds"), as
    PostgreSQL array literals; the others none."""
    paths = []
    for _ in range(count):
        if rng.random() >= HEADING_SHARE:
            paths.append("{}")
            continue
        section = SECTIONS[int(rng.integers(0, len(SECTIONS)))]
        paths.append(f'{{"Admin guide {int(rng.integers(0, 50))}","{section}"}}')
    return paths


def sizes() -> list[int]:
    small = ROWS // 100
    return [small] + [(ROWS - small) // (TENANTS - 1)] * (TENANTS - 1)


def connection_params() -> dict[str, Any]:
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params["dbname"] = NAME
    params["application_name"] = "bench-load"
    return params


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    user = quote(str(s["USER"] or ""), safe="")
    password = quote(str(s["PASSWORD"] or ""), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    host = str(s["HOST"] or "")
    if host.startswith("/"):
        return f"postgres://{auth}/{NAME}?host={host}"
    return f"postgres://{auth}{host}:{s['PORT'] or 5432}/{NAME}"


def migrate(*args: str) -> float:
    env = dict(os.environ, DATABASE_URL=database_url(), PGAPPNAME="bench-migrate", DB_POOL="0")
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def prepare(rebuild: bool) -> None:
    """The database at knowledge 0012 with the chunks (built if missing or of another size)."""
    import numpy as np
    import psycopg
    from django.db import connection

    admin = connection_params() | {"dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [NAME]).fetchone()
        if exists and rebuild:
            conn.execute(f'DROP DATABASE "{NAME}" WITH (FORCE)')
        if not exists or rebuild:
            conn.execute(f'CREATE DATABASE "{NAME}"')
    connection.close()
    connection.settings_dict["NAME"] = NAME
    with psycopg.connect(**connection_params(), autocommit=True) as conn:
        try:
            (have,) = conn.execute("SELECT count(*) FROM knowledge_chunk").fetchone()  # type: ignore[misc]
        except psycopg.errors.UndefinedTable:
            have = -1
    if have >= sum(sizes()):
        return
    print(f"building {sum(sizes())} chunks in {TENANTS} tenants at knowledge {BEFORE} ...",
          file=sys.stderr)  # fmt: skip
    migrate()
    migrate("knowledge", BEFORE)
    from bench.retrieval import DIMS, build
    from knowledge import vector_index

    rng = np.random.default_rng(13)
    centres = rng.standard_normal((200, DIMS)).astype(np.float32)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tenants_tenant CASCADE")
        build(cursor, rng, centres, sizes=sizes(), texts=texts,
              headings=heading_paths if MIGRATION == "headings" else None)  # fmt: skip
    started = time.perf_counter()
    done = vector_index.maintain(concurrently=False)
    print(f"  {len(done['created'])} dataset indexes built in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE knowledge_chunk")


def cjk_tenant() -> None:
    """CJK_TENANT's chunks that have none get CJK text (the triggers keep termstat)."""
    import numpy as np
    import psycopg

    rng = np.random.default_rng(17)
    with psycopg.connect(**connection_params()) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT c.id FROM knowledge_chunk c JOIN tenants_tenant t ON t.id = c.tenant_id"
                " WHERE t.slug = %s AND octet_length(c.text) = length(c.text)",
                [CJK_TENANT],
            )
        ]
        for start in range(0, len(ids), 1000):
            page = ids[start : start + 1000]
            conn.execute(
                "UPDATE knowledge_chunk c SET text = n.text FROM unnest(%s::uuid[], %s::text[])"
                " AS n(id, text) WHERE c.id = n.id",
                [page, [cjk_text(rng) for _ in page]],
            )
            conn.commit()
    print(f"  {len(ids)} chunks of {CJK_TENANT} given CJK text", file=sys.stderr)


def applied() -> str:
    import psycopg

    with psycopg.connect(**connection_params()) as conn:
        row = conn.execute(
            "SELECT max(name) FROM django_migrations WHERE app = 'knowledge'"
        ).fetchone()
    return str(row[0]) if row else ""


@dataclass
class Calls:
    """One load thread's calls: (start, seconds), errors, and its own observations."""

    times: list[tuple[float, float]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    no_counts: int = 0

    def longest(self, since: float) -> float:
        return max((s for t, s in self.times if t + s >= since), default=0.0)


def targets(params: dict[str, Any]) -> list[tuple[Any, Any, Any, str]]:
    """(tenant, dataset, document, a vector literal) per tenant, from a chunk of theirs."""
    import psycopg

    with psycopg.connect(**params) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (tenant_id) tenant_id, dataset_id, document_id, embedding::text"
            " FROM knowledge_chunk ORDER BY tenant_id, id"
        ).fetchall()
    return [tuple(r) for r in rows]


READ_VECTOR = (
    "SELECT id FROM knowledge_chunk WHERE tenant_id = %s "
    "ORDER BY embedding <=> %s::vector LIMIT 10"
)
READ_TEXT = (
    "SELECT c.id FROM knowledge_chunk c,"
    " CAST(replace(websearch_to_tsquery('english'::regconfig, %s::text)::text, ' & ', ' | ')"
    " AS tsquery) q"
    " WHERE c.dataset_id = %s AND c.search_vector @@ q"
    " ORDER BY ts_rank(c.search_vector, q) DESC LIMIT 10"
)
READ_COUNTS = (  # the BM25 leg's document frequencies, and the dataset's chunk count ('')
    "SELECT count(*) FILTER (WHERE lexeme = '') FROM knowledge_termstat"
    " WHERE dataset_id = %s AND language = 'english'::regconfig AND lexeme"
    " = ANY(tsvector_to_array(to_tsvector('english'::regconfig, %s::text)) || ARRAY[''])"
)
INSERT = (
    "INSERT INTO knowledge_chunk (id, tenant_id, dataset_id, document_id, ordinal, text,"
    " heading_path, tags, metadata, token_count, char_start, char_end, language, embedding,"
    " embedding_model, injection_suspected, created_at, updated_at) VALUES (%s, %s, %s, %s,"
    " %s, %s, '{}', '{}', '{}', 10, 0, 10, 'english', %s::vector, 'bench', false, now(),"
    " now())"
)


def paced(stop: threading.Event, calls: Calls, call: Any) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            call()
        except Exception as error:  # recorded, the load goes on
            calls.errors.append((started, f"{type(error).__name__}: {str(error)[:120]}"))
        calls.times.append((started, time.monotonic() - started))
        next_at = max(next_at + TICK, time.monotonic())
        stop.wait(max(0.0, next_at - time.monotonic()))


def reader(stop: threading.Event, params: dict[str, Any], spots: list[Any], calls: Calls) -> None:
    import numpy as np
    import psycopg

    from bench.retrieval import query_text

    rng = np.random.default_rng(3)
    with psycopg.connect(**params, autocommit=True) as conn:

        def call() -> None:
            _tenant, dataset, _document, vector = spots[int(rng.integers(0, len(spots)))]
            words = query_text(rng)
            with conn.transaction():
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(READ_VECTOR, [_tenant, vector]).fetchall()
                conn.execute(READ_TEXT, [words, dataset]).fetchall()
                (found,) = conn.execute(READ_COUNTS, [dataset, words]).fetchone()  # type: ignore[misc]
                calls.no_counts += found == 0

        paced(stop, calls, call)


def writer(stop: threading.Event, params: dict[str, Any], spots: list[Any], calls: Calls) -> None:
    import numpy as np
    import psycopg

    rng = np.random.default_rng()  # new ordinals in every run
    counter = [0]
    with psycopg.connect(**params, autocommit=True) as conn:

        def call() -> None:
            tenant, dataset, document, vector = spots[int(rng.integers(0, len(spots)))]
            counter[0] += 1
            text = cjk_text(rng) if counter[0] % 5 == 0 else "refund invoice written under load"
            ordinal = int(rng.integers(1_000_000, 2**31))  # past the built chunks' ordinals
            conn.execute(INSERT, [uuid.uuid4(), tenant, dataset, document, ordinal, text, vector])

        paced(stop, calls, call)


LOCKS = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), a.backend_type),
       l.relation::regclass::text, l.mode, l.granted
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = ANY(%s) AND a.pid <> pg_backend_pid()
"""
WEAK = {"AccessShareLock", "RowShareLock", "RowExclusiveLock"}


def sampler(
    stop: threading.Event, params: dict[str, Any], spans: dict[Any, list[list[float]]]
) -> None:
    """Each lock stronger than a writer's, and each wait, as [first seen, last seen] spans."""
    import psycopg

    with psycopg.connect(**params, autocommit=True) as conn:
        (tables,) = conn.execute(  # type: ignore[misc]
            "SELECT ARRAY['knowledge_chunk'::regclass::oid, 'knowledge_termstat'::regclass::oid]"
        ).fetchone()
        while not stop.is_set():
            now = time.monotonic()
            for pid, app, table, mode, granted in conn.execute(LOCKS, [tables]).fetchall():
                if granted and mode in WEAK:
                    continue
                who = {"bench-migrate": "migrate", "bench-load": "load"}.get(app, app)
                key = (who, pid, table, mode, "held" if granted else "waiting")
                seen = spans.setdefault(key, [])
                if not seen or now - seen[-1][1] > 3 * TICK:  # a new span after a gap
                    seen.append([now, now])
                seen[-1][1] = now
            stop.wait(TICK)


def blocker(params: dict[str, Any], spot: Any, ready: threading.Event) -> None:
    import psycopg

    with psycopg.connect(**params) as conn:  # one transaction, until the end
        conn.execute(INSERT, [uuid.uuid4(), *spot[:3], 999_999, "a large document", spot[3]])
        ready.set()
        time.sleep(BLOCKER_SECONDS)
        conn.rollback()


def phase(label: str, args: tuple[str, ...]) -> dict[str, Any]:
    params = connection_params()
    stop = threading.Event()
    reads, writes = Calls(), Calls()
    spans: dict[Any, list[list[float]]] = {}
    spots = targets(params)
    threads = [
        threading.Thread(target=reader, args=(stop, params, spots, reads)),
        threading.Thread(target=writer, args=(stop, params, spots, writes)),
        threading.Thread(target=sampler, args=(stop, params, spans)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(2)  # the load's own pace first
    if BLOCKER_SECONDS:
        ready = threading.Event()
        held = threading.Thread(target=blocker, args=(params, spots[1], ready))
        held.start()
        ready.wait()
    started = time.monotonic()
    seconds = migrate(*args)
    stop.wait(1)
    stop.set()
    for thread in threads:
        thread.join()
    if BLOCKER_SECONDS:
        held.join()
    during = [(t, s) for t, s in reads.times if t + s >= started]
    locks: dict[tuple[str, ...], float] = defaultdict(float)
    for (who, _pid, table, mode, state), seen in spans.items():
        longest = max(last - first for first, last in seen)
        locks[(who, table, mode, state)] = max(locks[(who, table, mode, state)], longest)
    return {
        "label": label,
        "seconds": seconds,
        "reads": len(during),
        "read_max": reads.longest(started),
        "read_errors": [e for e in reads.errors if e[0] >= started],
        "no_counts": reads.no_counts,
        "write_max": writes.longest(started),
        "write_errors": [e for e in writes.errors if e[0] >= started],
        "locks": dict(locks),
    }


RECOUNT_DIFF = """
WITH recount AS (
    SELECT dataset_id, language, lexeme, count(*) AS df FROM (
        SELECT c.dataset_id, c.language, t.lexeme
        FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS t
        UNION ALL
        SELECT c.dataset_id, c.language, '' FROM knowledge_chunk c
    ) terms GROUP BY dataset_id, language, lexeme
)
SELECT count(*) FROM recount r FULL JOIN knowledge_termstat s USING (dataset_id, language, lexeme)
WHERE r.df IS DISTINCT FROM s.df
"""


def check(at_head: bool) -> dict[str, Any]:
    import psycopg

    expression = EXPRESSIONS[1] if at_head else EXPRESSIONS[0]
    result: dict[str, Any] = {}
    with psycopg.connect(**connection_params(), autocommit=True) as conn:
        (result["chunks"],) = conn.execute("SELECT count(*) FROM knowledge_chunk").fetchone()  # type: ignore[misc]
        (result["wrong_vectors"],) = conn.execute(  # type: ignore[misc]
            f"SELECT count(*) FROM knowledge_chunk WHERE search_vector IS DISTINCT FROM {expression}"  # noqa: S608
        ).fetchone()
        (result["termstat_off"],) = conn.execute(RECOUNT_DIFF).fetchone()  # type: ignore[misc]
    if at_head and MIGRATION == "cjk":
        result["cjk_search"] = cjk_search()
    if MIGRATION == "headings":
        result["heading_search"] = heading_search()
    return result


def heading_search() -> str:
    """How many of the top 10 chunks ``knowledge.retrieval.search`` (text mode) returns for a
    question naming a section ("what do the webhooks say") are under that section."""
    from django.db import connection

    from bots.models import Bot
    from knowledge.retrieval import search, search_space_for_bot
    from tenants.models import Tenant

    connection.close()
    bot = Bot.objects.for_tenant(Tenant.objects.get(slug="bench-1")).select_related("scope").get()
    hits = search(search_space_for_bot(bot), query="what do the webhooks say",
                  query_vector=[0.05] * 384, top_k=10, mode="text")  # fmt: skip
    under = sum("Webhooks" in hit.heading_path for hit in hits)
    return f"{under}/10 of the top 10 under Webhooks"


def cjk_search() -> dict[str, str]:
    """Per question: chunks of the first tenant that contain it, and how many of the top 10
    ``knowledge.retrieval.search`` (text mode) returned contain it."""
    from django.db import connection

    from bots.models import Bot
    from knowledge.retrieval import search, search_space_for_bot
    from tenants.models import Tenant

    connection.close()
    tenant = Tenant.objects.get(slug="bench-1")
    bot = Bot.objects.for_tenant(tenant).select_related("scope").get()
    space = search_space_for_bot(bot)
    found = {}
    for question, needle in QUESTIONS.items():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM knowledge_chunk WHERE tenant_id = %s AND strpos(text, %s) > 0",
                [tenant.pk, needle],
            )
            (have,) = cursor.fetchone()
        hits = search(space, query=question, query_vector=[0.05] * 384, top_k=10, mode="text")
        right = sum(needle in hit.text for hit in hits)
        found[question] = f"{right}/{min(10, have)} of top 10 ({have} chunks contain it)"
    return found


def main() -> int:
    setup_django()
    prepare(os.environ.get("BENCH_REBUILD") == "1")
    plan = [("forward", ("knowledge", HEAD)), ("backward", ("knowledge", BEFORE)),
            ("forward again", ("knowledge", HEAD))]  # fmt: skip
    if applied() == HEAD:
        plan = plan[1:]
    if os.environ.get("BENCH_PLAN") == "forward":
        plan = [step for step in plan if step[0].startswith("forward")][:1]
    if CJK_TENANT and applied() == BEFORE:
        cjk_tenant()
    print(f"\n{MIGRATION}: {ROWS} chunks, {TENANTS} tenants, {CJK_SHARE:.0%} CJK,"
          f" {HEADING_SHARE if MIGRATION == 'headings' else 0:.0%} under headings;"
          f" load every {TICK * 1000:.0f}"
          f" ms; blocker {BLOCKER_SECONDS:g} s; all-CJK tenant: {CJK_TENANT or 'none'}")  # fmt: skip
    for label, args in plan:
        result = phase(label, args)
        at_head = applied() == HEAD
        correct = check(at_head)
        print(f"\n### {label}: {result['seconds']:.1f} s (to {'the head' if at_head else BEFORE})")
        print(f"- reads: {result['reads']} during, longest {result['read_max'] * 1000:.0f} ms, "
              f"{len(result['read_errors'])} errors, {result['no_counts']} without BM25 counts")  # fmt: skip
        for _when, error in result["read_errors"][:3]:
            print(f"    read error: {error}")
        print(f"- inserts: longest {result['write_max'] * 1000:.0f} ms, "
              f"{len(result['write_errors'])} errors")  # fmt: skip
        for _when, error in result["write_errors"][:3]:
            print(f"    insert error: {error}")
        for (who, table, mode, state), seconds in sorted(result["locks"].items()):
            print(f"- {who} {state} {mode} on {table}: longest {seconds:.2f} s")
        print(f"- after: {correct}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

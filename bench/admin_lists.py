"""The staff admin's big changelists (documents, chunks, messages): one page's time, first and deep.

200,000 rows of each in one tenant (``BENCH_ROWS``), made by copying one row in SQL (a few
seconds; kept in the database ``bench_admin`` for later runs, ``BENCH_REBUILD=1`` starts
afresh). Each page is fetched by a signed-in superuser and by the tenant's staff user through
Django's test client, ``BENCH_REPEAT`` times (default 3): the median in ms, and the slowest SQL
statement of the median request. Pages: 1, 100, 1,000 and the last (``?p=``). The floor, measured
in the same run by each user: the admin's index page (the same session, middleware, permission
checks and template machinery, no list); ``x floor`` is a page's median over it.
``BENCH_LISTS=documents`` (comma-separated) runs some lists only."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from bench import create_database, setup_django

ROWS = int(os.environ.get("BENCH_ROWS", "200000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
DOCUMENTS_PER_CHUNKS = 400  # chunks spread over this many documents (500 each at 200k)


def copies(cursor: Any, table: str, template: str, count: int, overrides: dict[str, str]) -> None:
    """``count`` copies of row ``template`` of ``table``, ``overrides`` giving a column an SQL
    expression of ``g`` (1..count); ids are new."""
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position",
        [table],
    )
    columns = [c for (c,) in cursor.fetchall()]
    values = {c: f"t.{c}" for c in columns} | {"id": "gen_random_uuid()"} | overrides
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - our own column names
        f"SELECT {', '.join(values[c] for c in columns)} "
        f"FROM {table} t, generate_series(1, %s) g WHERE t.id = %s",
        [count, template],
    )


def build() -> Any:
    from django.db import connection

    from knowledge.models import Chunk
    from tests.world import build_tenant

    side = build_tenant("bench-admin")
    chunk = Chunk.all_tenants.get(document=side.document)
    ago = "now() - g * interval '1 second'"
    with connection.cursor() as cursor:
        copies(cursor, "knowledge_document", str(side.document.pk), ROWS,
               {"content_hash": "md5(g::text) || md5(g::text || 'x')", "external_id": "NULL",
                "raw_hash": "NULL", "title": "'document ' || g", "created_at": ago})  # fmt: skip
        cursor.execute(
            "CREATE TEMP TABLE bench_documents AS SELECT id, row_number() OVER () - 1 AS n "
            "FROM (SELECT id FROM knowledge_document WHERE tenant_id = %s LIMIT %s) d",
            [side.tenant.pk, DOCUMENTS_PER_CHUNKS],
        )
        cursor.execute("CREATE INDEX ON bench_documents (n)")
        spread = f"mod(g, {DOCUMENTS_PER_CHUNKS})"
        copies(cursor, "knowledge_chunk", str(chunk.pk), ROWS,
               {"document_id": f"(SELECT id FROM bench_documents WHERE n = {spread})",  # noqa: S608
                "ordinal": f"g / {DOCUMENTS_PER_CHUNKS} + 1", "text": "'Passage ' || g"})  # fmt: skip
        copies(cursor, "conversations_message", str(side.message.pk), ROWS, {"created_at": ago})
        cursor.execute("ANALYZE")
    return side


def median_page(client: Any, url: str) -> tuple[float, float, int]:
    """Median ms of ``REPEAT`` GETs, the slowest statement's ms in that request, its count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    runs = []
    for _ in range(REPEAT):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code}")
        slowest = max(float(q["time"]) for q in queries.captured_queries) * 1000
        runs.append((ms, slowest, len(queries.captured_queries)))
    runs.sort()
    return runs[len(runs) // 2]


def main() -> int:
    setup_django()
    from django.db import connection

    from tenants.models import Tenant
    from tests.staff import staff_client

    create_database("bench_admin", reuse=os.environ.get("BENCH_REBUILD") != "1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM conversations_message")
        (have,) = cursor.fetchone()
    if have < ROWS:
        print(f"building {ROWS:,} documents, chunks and messages ...", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE tenants_tenant, auth_user CASCADE")
        started = time.perf_counter()
        build()
        print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    tenant = Tenant.objects.get(slug="bench-admin")
    stamp = str(int(time.time()))
    clients = {
        "superuser": staff_client(tenant, f"root{stamp}", superuser=True),
        "staff": staff_client(tenant, f"alice{stamp}"),
    }
    lists = {
        "documents": ("/admin/knowledge/document/", 50),
        "chunks": ("/admin/knowledge/chunk/", 100),
        "messages": ("/admin/conversations/message/", 100),
    }
    wanted = os.environ.get("BENCH_LISTS")
    if wanted:
        lists = {name: lists[name] for name in wanted.split(",")}
    floors = {who: median_page(client, "/admin/")[0] for who, client in clients.items()}
    for who, floor in floors.items():
        print(f"floor (admin index) {who}: {floor:.0f} ms")
    print(f"{'list':10} {'who':9} {'page':>6} {'ms':>8} {'x floor':>8} {'slowest SQL ms':>15} "
          f"{'queries':>8}")  # fmt: skip
    for name, (url, per_page) in lists.items():
        last = -(-ROWS // per_page)
        for who, client in clients.items():
            for page in (1, 100, 1000, last):
                ms, slowest, count = median_page(client, f"{url}?p={page}")
                print(f"{name:10} {who:9} {page:>6} {ms:>8.0f} {ms / floors[who]:>8.1f} "
                      f"{slowest:>15.0f} {count:>8}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

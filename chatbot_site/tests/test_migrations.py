"""Migrations build the whole schema from an empty database, undo cleanly, and match the models."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import sql

from tests.processes import ROOT, ForkServer, child_env, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


# What manage.py imports before the project's own code: each step below is a child forked off
# one interpreter that has imported these (tests.processes.ForkServer), a process of its own
# that imports the settings, the project and its migrations itself, as ``manage.py`` would,
# without a new interpreter and Django's import each time. (The migrations run in background
# below, which a test kills or races, are real ``manage.py`` processes.)
THIRD_PARTY = [
    "django", "django.conf", "django.core.management", "django.db.migrations", "django.urls",
    "django.test", "environ", "kombu", "corsheaders.defaults", "psycopg", "psycopg_pool", "redis",
    "rest_framework", "rest_framework_simplejwt", "celery", "celery.app", "structlog",
    "cryptography", "numpy", "yaml", "PIL", "drf_spectacular", "click",
]  # fmt: skip
MANAGE = (
    "import runpy, sys; sys.argv = ['manage.py', *sys.argv[1:]]; "
    "runpy.run_path('manage.py', run_name='__main__')"
)


_server: ForkServer | None = None


@pytest.fixture(scope="module", autouse=True)
def fork_server() -> Iterator[None]:
    global _server
    _server = ForkServer(THIRD_PARTY, child_env())
    yield
    _server.close()
    _server = None


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    assert _server is not None
    code = f"import sys; sys.argv[1:] = {list(args)!r}; {MANAGE}"
    return _server.run(code, child_env(DATABASE_URL=database_url), timeout=180)


@contextlib.contextmanager
def scratch_database(template: str | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """A database of its own on the test server, empty or a copy of ``template`` (which no one
    may be connected to): its URL, its name and the server's connection parameters."""
    params = connection.get_connection_params()
    admin = {k: v for k, v in params.items() if k in {"host", "port", "user", "password"}}
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(create)
    host = admin.get("host", "localhost")
    user = admin.get("user", "postgres")
    password = admin.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if str(host).startswith("/"):
        url = f"postgresql://{auth}/{name}?host={host}"
    else:
        url = f"postgresql://{auth}{host}:{admin.get('port') or 5432}/{name}"
    try:
        yield url, name, admin
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def empty_database():
    with scratch_database() as database:
        yield database


def test_migrations_run_from_zero_and_back(empty_database):
    url, name, admin = empty_database
    forward = manage("migrate", "--noinput", database_url=url)
    assert forward.returncode == 0, forward.stderr

    with psycopg.connect(dbname=name, **admin) as conn:
        assert conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
        assert {"chunk_embedding_ann", "chunk_dataset_search_gin", "chunk_tags_gin",
                "message_cited_documents"} <= indexes  # fmt: skip
        triggers = {row[0] for row in conn.execute("SELECT tgname FROM pg_trigger")}
        assert {"tenants_auditlog_no_update_delete", "conversations_forget_deleted_documents",
                "conversations_message_cites_present", "tenants_tenant_quota_changed"} <= triggers  # fmt: skip

    check = manage("makemigrations", "--check", "--dry-run", database_url=url)
    assert check.returncode == 0, check.stdout + check.stderr

    for app in ("knowledge", "conversations", "bots", "tenants"):
        backward = manage("migrate", app, "zero", "--noinput", database_url=url)
        assert backward.returncode == 0, backward.stderr
    with psycopg.connect(dbname=name, **admin) as conn:
        left = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND ("
            "tablename LIKE 'tenants_%' OR tablename LIKE 'bots_%' OR "
            "tablename LIKE 'knowledge_%' OR tablename LIKE 'conversations_%')"
        ).fetchall()
        assert left == []


def test_finish_reason_constraint_is_validated_outside_the_exclusive_lock():
    """Widening message_finish_reason_valid must not scan every message under ACCESS EXCLUSIVE
    (every chat turn waits, reads included): the constraint is added NOT VALID, a moment's lock,
    and validated afterwards in a transaction of its own, which lets chats go on."""
    out = io.StringIO()
    call_command("sqlmigrate", "conversations", "0003", stdout=out)
    statements = out.getvalue()
    assert "BEGIN;" not in statements  # not one transaction holding the lock through the scan
    added = statements.index("NOT VALID")
    assert statements.index("VALIDATE CONSTRAINT message_finish_reason_valid") > added

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'message_finish_reason_valid'"
        )
        validated, definition = cursor.fetchone()
    assert validated
    assert "content_filter" in definition


# knowledge 0013 (CJK bigrams) on a database holding chunks: what the upgrade audit measured at
# 160,000 chunks (docs/BENCHMARKS.md), on a few.
def document_as_of(migration: str, slug: str, language: str) -> str:
    """A ``manage.py shell`` script's start: a tenant, a dataset and one ready document made
    as knowledge ``migration`` has the document (the model has columns added since)."""
    return f"""
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from knowledge.models import Chunk, Dataset, DocumentStatus
from tenants.models import Tenant
state = MigrationLoader(connection).project_state(("knowledge", "{migration}"))
Document = state.apps.get_model("knowledge", "Document")
tenant = Tenant.objects.create(slug="{slug}", name="{slug}")
dataset = Dataset.all_tenants.create(tenant=tenant, name="d", language="{language}")
document = Document._default_manager.create(
    tenant_id=tenant.pk, dataset_id=dataset.pk, title="d", source="s", source_type="record",
    status=DocumentStatus.READY, content_hash="0" * 64)
"""


CJK_SEED = document_as_of("0012_document_transient_failures", "cjk", "simple") + """
for i, text in enumerate(["东京塔每晚都会亮灯", "refunds take five days", "返金は一週間"]):
    Chunk.all_tenants.create(
        tenant=tenant, dataset=dataset, document_id=document.pk, ordinal=i, text=text, token_count=3,
        char_start=0, char_end=len(text), language="simple", embedding=[0.1] * 384,
        embedding_model="m")
"""
BIGRAMS = "to_tsvector(language, knowledge_cjk_bigrams(text))"
PLAIN = "to_tsvector(language, text)"
TERMSTAT_OFF = """
WITH recount AS (
    SELECT dataset_id, language, lexeme, count(*) AS df FROM (
        SELECT c.dataset_id, c.language, t.lexeme
        FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS t
        UNION ALL SELECT c.dataset_id, c.language, '' FROM knowledge_chunk c
    ) terms GROUP BY dataset_id, language, lexeme
)
SELECT count(*) FROM recount r FULL JOIN knowledge_termstat s USING (dataset_id, language, lexeme)
WHERE r.df IS DISTINCT FROM s.df
"""


@contextlib.contextmanager
def seeded_template(migration: str, seed: str) -> Iterator[str]:
    """The name of a scratch database migrated to knowledge ``migration`` and seeded with
    ``seed`` (a shell command), for a module's tests to copy (``scratch_database(template=)``)."""
    with scratch_database() as (url, name, _admin):
        for args in (("migrate", "knowledge", migration), ("shell", "-c", seed)):
            done = manage(*args, database_url=url)
            assert done.returncode == 0, done.stderr
        yield name


@pytest.fixture(scope="module")
def knowledge_0012_template() -> Iterator[str]:
    """A database migrated to knowledge 0012 and seeded with ``CJK_SEED``, made once for the
    module: each test below starts from a copy of it (``CREATE DATABASE ... TEMPLATE``, well
    under a second) instead of a migrate and a seed of its own, two Django processes each."""
    with seeded_template("0012", CJK_SEED) as name:
        yield name


@pytest.fixture
def chunks_at_knowledge_0012(knowledge_0012_template):
    """A database of the test's own at knowledge 0012, holding ``CJK_SEED``'s chunks."""
    with scratch_database(template=knowledge_0012_template) as database:
        yield database


def one(conn: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def cjk_state(conn: psycopg.Connection, expression: str) -> tuple[int, int, int]:
    """(the chunk table's file, chunks whose vector is not ``expression``, termstat rows that
    differ from a recount)."""
    node = one(conn, "SELECT relfilenode FROM pg_class WHERE oid = 'knowledge_chunk'::regclass")
    wrong = one(
        conn,
        f"SELECT count(*) FROM knowledge_chunk WHERE search_vector IS DISTINCT FROM {expression}",  # noqa: S608
    )
    off = one(conn, TERMSTAT_OFF)
    return node, wrong, off


def migrate_in_background(url: str, target: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "knowledge", target, "--noinput"],
        cwd=ROOT,
        env=child_env(DATABASE_URL=url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting_backend(conn: psycopg.Connection, name: str, event: str) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
        " AND wait_event = %s",
        [name, event],
    ).fetchone()
    return row[0] if row else None


def test_cjk_bigrams_migration_rewrites_no_table_either_way(chunks_at_knowledge_0012):
    """Going back from knowledge 0013 made search_vector a generated column again: the table
    rewritten and every index rebuilt, HNSW included, with the table locked for reads and
    writes (403 s at 160,000 chunks). Both ways now keep the table's file: an ordinary column
    kept by a trigger, the CJK chunks re-indexed, termstat following exactly."""
    url, name, admin = chunks_at_knowledge_0012
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        node, wrong, off = cjk_state(conn, PLAIN)
        assert (wrong, off) == (0, 0)
        for target, expression in (("0013", BIGRAMS), ("0012", PLAIN), ("0014", BIGRAMS)):
            done = manage("migrate", "knowledge", target, "--noinput", database_url=url)
            assert done.returncode == 0, done.stderr
            assert cjk_state(conn, expression) == (node, 0, 0), target
            if target == "0012":  # the code still serving a rollback searches with it
                assert one(conn, "SELECT knowledge_cjk_bigrams('返金は')") == "返金 金は"
        vector = one(
            conn, "SELECT search_vector::text FROM knowledge_chunk WHERE text = '返金は一週間'"
        )
    assert vector == "'は一':3 '一週':4 '返金':1 '週間':5 '金は':2"


def test_cjk_bigrams_migration_completes_when_run_again_after_being_cut_short(
    chunks_at_knowledge_0012,
):
    """Its change commits before the re-indexing: a migrate killed meanwhile (a deploy's
    timeout) left it unrecorded, and every later migrate failed on CREATE FUNCTION ("already
    exists"). Now each statement may run again."""
    url, name, admin = chunks_at_knowledge_0012
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        dataset = one(conn, "SELECT id FROM knowledge_dataset")
        # The re-indexing's BM25 trigger takes this lock: the migration stops there.
        conn.execute(
            "SELECT pg_advisory_lock(hashtextextended('knowledge_termstat:' || %s::text, 0))",
            [dataset],
        )
        cut = migrate_in_background(url, "0013")
        pid = wait_for(lambda: waiting_backend(conn, name, "advisory"), timeout=60,
                       what="the re-indexing")  # fmt: skip
        cut.kill()
        cut.wait()
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        conn.execute("SELECT pg_advisory_unlock_all()")
        again = manage("migrate", "knowledge", "0013", "--noinput", database_url=url)
        assert again.returncode == 0, again.stderr
        assert cjk_state(conn, BIGRAMS)[1:] == (0, 0)


def test_cjk_bigrams_migration_lets_reads_through_while_it_waits_for_its_lock(
    chunks_at_knowledge_0012,
):
    """Its ALTER TABLE waited for a long transaction on the chunk table (an ingestion storing a
    large document) with no bound, and every read queued behind it for as long. Now it waits a
    second at most, lets the reads through and tries again."""
    url, name, admin = chunks_at_knowledge_0012
    with (
        psycopg.connect(dbname=name, **admin) as long_transaction,
        psycopg.connect(dbname=name, autocommit=True, **admin) as reader,
    ):
        long_transaction.execute("SELECT count(*) FROM knowledge_chunk")  # and stays open
        migration = migrate_in_background(url, "0013")
        wait_for(lambda: waiting_backend(reader, name, "relation"), timeout=60,
                 what="the migration waiting for its lock")  # fmt: skip
        reader.execute("SET statement_timeout = '5s'")
        longest = 0.0
        until = time.monotonic() + 6
        while time.monotonic() < until:
            started = time.monotonic()
            reader.execute("SELECT count(*) FROM knowledge_chunk").fetchone()
            longest = max(longest, time.monotonic() - started)
            time.sleep(0.05)
        long_transaction.rollback()
        _out, errors = migration.communicate(timeout=60)
        assert migration.returncode == 0, errors
    assert longest < 2


def test_cjk_bigrams_migration_reindexes_a_hundred_chunks_per_transaction(chunks_at_knowledge_0012):
    """A page of the re-indexing was 5,000 ids in one transaction, however many of them had CJK
    letters: where most chunks are Chinese, 5,000 rows at ~11 ms each held for about 55 s (their
    deletion, re-ingestion or language change waited). Now a page is at most 100 re-indexed
    chunks."""
    url, name, admin = chunks_at_knowledge_0012
    many = (
        "from knowledge.models import Chunk\n"
        "first = Chunk.all_tenants.first()\n"
        "Chunk.all_tenants.bulk_create([Chunk(tenant_id=first.tenant_id,"
        " dataset_id=first.dataset_id, document_id=first.document_id, ordinal=10 + i,"
        " text=f'第{i}章 东京塔每晚都会亮灯', token_count=3, char_start=0, char_end=9,"
        " language='simple', embedding=[0.1] * 384, embedding_model='m') for i in range(250)])"
    )
    seeded = manage("shell", "-c", many, database_url=url)
    assert seeded.returncode == 0, seeded.stderr
    done = manage("migrate", "knowledge", "0013", "--noinput", database_url=url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        per_transaction = [
            row[0]
            for row in conn.execute(
                "SELECT count(*) FROM knowledge_chunk WHERE octet_length(text) <> length(text)"
                " GROUP BY xmin::text::bigint"
            )
        ]
        assert cjk_state(conn, BIGRAMS)[1:] == (0, 0)
    assert sum(per_transaction) == 252
    assert max(per_transaction) <= 100


def start_migrate(url: str, name: str) -> subprocess.Popen[str]:
    """``manage.py migrate`` on the database of ``url``, its connections named ``name``."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=child_env(DATABASE_URL=f"{url}&application_name={name}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_migrates_at_once_run_one_after_the_other(chunks_at_knowledge_0012):
    """Two containers starting together both ran ``migrate``: on an upgrade from knowledge 0012
    both applied 0013 (recorded twice) and the second failed on 0014's index ("relation
    document_dataset_created already exists"); on a fresh database the second failed on
    contenttypes 0002. Now the second waits for the first's advisory lock and finds nothing
    left to apply. The first is held at its first migration (the table it records in locked)
    until the second has connected, so the two overlap however slow the machine."""
    url, name, admin = chunks_at_knowledge_0012
    with (
        psycopg.connect(dbname=name, autocommit=True, **admin) as conn,
        psycopg.connect(dbname=name, **admin) as locker,
    ):
        with locker.transaction():
            # No INSERT into it: the first waits at the end of its first migration.
            locker.execute("LOCK TABLE django_migrations IN SHARE MODE")
            first = start_migrate(url, "migrate_first")
            wait_for(lambda: waiting_backend(conn, name, "relation"), timeout=120,
                     what="the first migrate recording its first migration")  # fmt: skip
            second = start_migrate(url, "migrate_second")
            wait_for(
                lambda: one(
                    conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    ("migrate_second",),
                ),
                timeout=120,
                what="the second migrate connecting",
            )
            time.sleep(1)  # for the second to read its plan (no assertion rests on this)
        _out, first_errors = first.communicate(timeout=180)
        _out, second_errors = second.communicate(timeout=180)
        assert (first.returncode, second.returncode) == (0, 0), first_errors + second_errors
        twice = conn.execute(
            "SELECT app, name FROM django_migrations GROUP BY app, name HAVING count(*) > 1"
        ).fetchall()
        assert twice == []
        assert cjk_state(conn, BIGRAMS)[1:] == (0, 0)
    check = manage("migrate", "--check", database_url=url)
    assert check.returncode == 0, check.stdout + check.stderr


# knowledge 0016 (the heading path in search_vector) on a database holding chunks.
HEADINGS_SEED = document_as_of("0015_document_pipeline_version", "headings", "english") + """
rows = [("Canary lines catch leaks", ["Security", "Guardrails"]), ("Refunds take days", []),
        ("东京塔每晚都会亮灯", ["东京塔"])]
for i, (text, path) in enumerate(rows * 70):
    Chunk.all_tenants.create(
        tenant=tenant, dataset=dataset, document_id=document.pk, ordinal=i, text=text, heading_path=path,
        token_count=3, char_start=0, char_end=len(text), language="english",
        embedding=[0.1] * 384, embedding_model="m")
"""
WITH_HEADINGS = (
    f"({BIGRAMS} || setweight(to_tsvector(language,"
    " knowledge_cjk_bigrams(array_to_string(heading_path, ' '))), 'A'))"
)


def test_headings_migration_reindexes_chunks_with_headings_in_pages_and_rewrites_no_table(
    empty_database,
):
    """knowledge 0016 gives every chunk under a heading a new vector: by 0013's way (the row
    trigger's expression, then pages of at most 100 re-indexed chunks, each its own
    transaction), never a table rewrite; a chunk without headings is not touched; BM25's
    frequencies follow exactly; going back restores 0013's vectors the same way."""
    url, name, admin = empty_database
    for args in (("migrate", "knowledge", "0015"), ("shell", "-c", HEADINGS_SEED)):
        done = manage(*args, database_url=url)
        assert done.returncode == 0, done.stderr
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        node = cjk_state(conn, BIGRAMS)[0]
        assert cjk_state(conn, BIGRAMS) == (node, 0, 0)
        headless = (
            "SELECT array_agg(xmin::text ORDER BY id) FROM knowledge_chunk"
            " WHERE cardinality(heading_path) = 0"
        )
        written = one(conn, headless)
        for target, expression in (("0016", WITH_HEADINGS), ("0015", BIGRAMS),
                                   ("0016", WITH_HEADINGS)):  # fmt: skip
            done = manage("migrate", "knowledge", target, "--noinput", database_url=url)
            assert done.returncode == 0, done.stderr
            assert cjk_state(conn, expression) == (node, 0, 0), target
        per_transaction = [
            row[0]
            for row in conn.execute(
                "SELECT count(*) FROM knowledge_chunk WHERE cardinality(heading_path) > 0"
                " GROUP BY xmin::text::bigint"
            )
        ]
        untouched = one(conn, headless) == written
        vector = one(
            conn,
            "SELECT search_vector::text FROM knowledge_chunk WHERE text = 'Canary lines catch leaks'"
            " LIMIT 1",
        )
    assert sum(per_transaction) == 140 and max(per_transaction) == 100
    assert untouched  # no page wrote a chunk without headings
    assert vector == "'canari':1 'catch':3 'guardrail':6A 'leak':4 'line':2 'secur':5A"


# knowledge 0017 (raw_hash, its unique index built CONCURRENTLY) and 0018 (indexed_title) on a
# database holding documents. No backfill of raw_hash: a document stored re-encoded before 0017
# kept only its UTF-8 text (not the bytes, nor the charset they were read in), so its raw bytes'
# hash cannot be computed; one stored as it came has raw_hash = content_hash, which the
# duplicate check already reads from a null raw_hash (knowledge.intake._same_bytes), and the two
# cannot be told apart from what is stored.
RAW_HASH_SEED = document_as_of("0016_chunk_search_vector_headings", "rawhash", "english")
RAW_HASH_INDEX = "document_raw_hash_unique_per_dataset"


@pytest.fixture(scope="module")
def knowledge_0016_template() -> Iterator[str]:
    """A database migrated to knowledge 0016 and seeded with ``RAW_HASH_SEED``, made once for
    the module (as ``knowledge_0012_template``): three tests start from a copy of it."""
    with seeded_template("0016", RAW_HASH_SEED) as name:
        yield name


@pytest.fixture
def documents_at_knowledge_0016(knowledge_0016_template):
    """A database of the test's own at knowledge 0016, holding ``RAW_HASH_SEED``'s document."""
    with scratch_database(template=knowledge_0016_template) as database:
        yield database


def document_columns(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'knowledge_document'"
    )
    return {row[0] for row in rows}


def raw_hash_index(conn: psycopg.Connection) -> tuple[bool, str] | None:
    """(valid, definition) of 0017's index, if it exists."""
    row = conn.execute(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
        [RAW_HASH_INDEX],
    ).fetchone()
    return (row[0], row[1]) if row else None


def test_raw_hash_and_indexed_title_migrations_go_both_ways_with_documents(
    documents_at_knowledge_0016,
):
    """0017 and 0018 add nullable columns with no default (no table rewrite: the table's file
    stays), existing documents keep null, 0017's unique index is valid and partial; back, the
    columns and the index go and the documents stay as they were; forward again works."""
    url, name, admin = documents_at_knowledge_0016
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        node = one(
            conn, "SELECT relfilenode FROM pg_class WHERE oid = 'knowledge_document'::regclass"
        )
        before = conn.execute("SELECT id, title, content_hash FROM knowledge_document").fetchall()
        assert len(before) == 1

        def migrate(target: str) -> None:
            done = manage("migrate", "knowledge", target, "--noinput", database_url=url)
            assert done.returncode == 0, done.stderr
            assert one(conn, "SELECT relfilenode FROM pg_class"
                             " WHERE oid = 'knowledge_document'::regclass") == node, target  # fmt: skip
            assert (
                conn.execute("SELECT id, title, content_hash FROM knowledge_document").fetchall()
                == before
            ), target

        migrate("0017")
        assert "raw_hash" in document_columns(conn)
        assert one(conn, "SELECT count(*) FROM knowledge_document WHERE raw_hash IS NULL") == 1
        valid, definition = raw_hash_index(conn) or (False, "")
        assert valid, definition
        assert "UNIQUE" in definition and "WHERE (raw_hash IS NOT NULL)" in definition

        migrate("0018")
        assert "indexed_title" in document_columns(conn)
        assert one(conn, "SELECT count(*) FROM knowledge_document WHERE indexed_title IS NULL") == 1
        conn.execute(
            "UPDATE knowledge_document SET raw_hash = repeat('a', 64), indexed_title = 't'"
        )

        migrate("0017")
        assert "indexed_title" not in document_columns(conn)
        assert one(conn, "SELECT raw_hash FROM knowledge_document") == "a" * 64  # 0017's, kept

        migrate("0016")
        assert not {"raw_hash", "indexed_title"} & document_columns(conn)
        assert raw_hash_index(conn) is None

        migrate("0018")
        assert {"raw_hash", "indexed_title"} <= document_columns(conn)
        assert (raw_hash_index(conn) or (False,))[0]


def test_raw_hash_migration_completes_when_run_again_after_its_index_build_failed(
    documents_at_knowledge_0016,
):
    """A CONCURRENTLY build cut short (or failed) leaves an INVALID index, and the migration
    unrecorded: running migrate again drops it and builds it anew. Here the build fails on two
    documents with the same bytes (the column added by hand, as 0017's first step does)."""
    url, name, admin = documents_at_knowledge_0016
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:
        conn.execute("ALTER TABLE knowledge_document ADD COLUMN raw_hash varchar(64) NULL")
        conn.execute(
            "INSERT INTO knowledge_document SELECT (json_populate_record(d, json_build_object("
            "'id', gen_random_uuid(), 'content_hash', repeat('1', 64)))).*"
            " FROM knowledge_document d"
        )
        conn.execute("UPDATE knowledge_document SET raw_hash = repeat('b', 64)")
        failed = manage("migrate", "knowledge", "0017", "--noinput", database_url=url)
        assert failed.returncode != 0
        assert "could not create unique index" in failed.stderr, failed.stderr[-2000:]
        assert (raw_hash_index(conn) or (True,))[0] is False  # left INVALID

        conn.execute(
            "UPDATE knowledge_document SET raw_hash = NULL WHERE content_hash = repeat('1', 64)"
        )
        again = manage("migrate", "knowledge", "0017", "--noinput", database_url=url)
        assert again.returncode == 0, again.stderr
        assert (raw_hash_index(conn) or (False,))[0] is True
        assert (
            one(
                conn, "SELECT count(*) FROM django_migrations WHERE name = '0017_document_raw_hash'"
            )
            == 1
        )


def index_state(conn: psycopg.Connection, index: str) -> tuple[bool, str] | None:
    """(valid, definition) of ``index``, if it exists."""
    row = conn.execute(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
        [index],
    ).fetchone()
    return (row[0], row[1]) if row else None


def test_created_index_serves_a_superusers_document_list_and_goes_both_ways(
    documents_at_knowledge_0016,
):
    """knowledge 0019: the staff admin's document list for a superuser is every tenant's
    documents by (created_at DESC, id DESC), and no index had that order (the tenant came first
    in every one): a page of 50 sorted all of them. The index, built CONCURRENTLY, serves it
    (with sorting ruled out, a plan without it is still a Sort); an index of its name left by a
    build cut short is dropped and built anew; back, it goes and the documents stay."""
    url, name, admin = documents_at_knowledge_0016
    index = "document_created"
    page = "SELECT id FROM knowledge_document ORDER BY created_at DESC, id DESC LIMIT 50"
    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:

        def migrate(target: str) -> None:
            done = manage("migrate", "knowledge", target, "--noinput", database_url=url)
            assert done.returncode == 0, done.stderr

        def plan() -> str:
            conn.execute("SET enable_sort = off")
            return "\n".join(row[0] for row in conn.execute(f"EXPLAIN {page}"))

        migrate("0018")
        conn.execute(
            "INSERT INTO knowledge_document SELECT (json_populate_record(d, json_build_object("
            "'id', gen_random_uuid(), 'content_hash', md5(g::text) || md5(g::text || 'x'),"
            " 'created_at', now() - g * interval '1 second'))).*"
            " FROM knowledge_document d, generate_series(1, 30) g"
        )
        before = conn.execute(page).fetchall()
        assert len(before) == 31 and "Sort" in plan() and index not in plan()
        conn.execute(f"CREATE INDEX {index} ON knowledge_document (title)")  # a cut-short build

        migrate("0019")
        valid, definition = index_state(conn, index) or (False, "")
        assert valid and definition.endswith("(created_at DESC, id DESC)"), definition
        assert index in plan() and "Sort" not in plan()
        assert conn.execute(page).fetchall() == before

        migrate("0018")
        assert index_state(conn, index) is None
        assert conn.execute(page).fetchall() == before
        migrate("0019")
        assert (index_state(conn, index) or (False,))[0]


# Keys as a deployment before tenants 0005 has them: a full admin key made a bot-limited one,
# which made two keys (one of them limited too, which made a third); an unlimited key made one.
EARLIER_KEYS_SEED = """
import uuid
from tenants.models import AuditLog
from tenants.tests.factories import ApiKeyFactory, TenantFactory
tenant = TenantFactory(slug="earlier")
bot = [uuid.uuid4()]
keys = {}
def made(name, by, **fields):
    keys[name] = ApiKeyFactory(tenant=tenant, role="admin", name=name, **fields)
    if by is not None:
        AuditLog.all_tenants.create(tenant=tenant, actor_type="api_key", actor_id=str(keys[by].pk),
                                    action="api_key.create", target_type="apikey",
                                    target_id=str(keys[name].pk))
made("full", None)
made("limited", "full", bot_ids=bot)
made("child", "limited")
made("limited child", "limited", bot_ids=bot)
made("grandchild", "limited child")
made("other", "full")
"""


def test_keys_a_bot_limited_key_made_before_0005_share_its_rate_limit(empty_database):
    """tenants 0006: the keys a bot-limited key created before 0005 took a rate limit of their
    own each (0005 shares it only for keys created after); now they share the creator's, a
    limited child's keys the same (flattened), and the keys an unlimited key made keep theirs."""
    url, name, admin = empty_database
    for args in (("migrate", "tenants", "0005"), ("shell", "-c", EARLIER_KEYS_SEED)):
        done = manage(*args, database_url=url)
        assert done.returncode == 0, done.stderr
    done = manage("migrate", "tenants", "0006", "--noinput", database_url=url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dbname=name, **admin) as conn:
        rows = conn.execute(
            "SELECT k.name, b.name FROM tenants_apikey k"
            " LEFT JOIN tenants_apikey b ON b.id = k.rate_budget_id"
        ).fetchall()
    assert dict(rows) == {
        "full": None,
        "limited": None,
        "child": "limited",
        "limited child": "limited",
        "grandchild": "limited",
        "other": None,
    }


# A conversation with an answer, stored at the latest schema (the verdict kept with it).
ANSWER_SEED = """
from conversations.tests.factories import ConversationFactory, MessageFactory
from tests.world import build_tenant
world = build_tenant("stored")
conversation = ConversationFactory(tenant=world.tenant, bot=world.bot)
MessageFactory(tenant=world.tenant, conversation=conversation, role="assistant",
               content="Plans renew every year.", injection_flagged=False)
"""


def message_columns(conn: psycopg.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'conversations_message'"
        )
    }


def test_answer_verdict_migration_goes_both_ways_with_messages(empty_database):
    """conversations 0006 adds ``injection_flagged``, nullable with no default (no table
    rewrite: the table's file stays): the answers stored before it keep null (checked when
    read); back, the column goes and the messages stay; forward again works."""
    url, name, admin = empty_database
    for args in (("migrate", "--noinput"), ("shell", "-c", ANSWER_SEED)):
        done = manage(*args, database_url=url)
        assert done.returncode == 0, done.stderr

    with psycopg.connect(dbname=name, autocommit=True, **admin) as conn:

        def migrate(target: str) -> None:
            done = manage("migrate", "conversations", target, "--noinput", database_url=url)
            assert done.returncode == 0, done.stderr

        def messages() -> list[tuple[Any, ...]]:
            return conn.execute("SELECT id, role, content FROM conversations_message").fetchall()

        stored = messages()
        assert "Plans renew every year." in [content for _, _, content in stored]
        migrate("0005")
        assert "injection_flagged" not in message_columns(conn)
        assert messages() == stored
        node = one(
            conn, "SELECT relfilenode FROM pg_class WHERE oid = 'conversations_message'::regclass"
        )

        migrate("0006")
        assert "injection_flagged" in message_columns(conn)
        assert one(conn, "SELECT relfilenode FROM pg_class"
                         " WHERE oid = 'conversations_message'::regclass") == node  # fmt: skip
        assert messages() == stored
        assert one(conn, "SELECT count(*) FROM conversations_message"
                         " WHERE injection_flagged IS NOT NULL") == 0  # fmt: skip

        conn.execute("UPDATE conversations_message SET injection_flagged = true")
        migrate("0005")
        assert "injection_flagged" not in message_columns(conn)
        assert messages() == stored
        migrate("0006")
        assert one(conn, "SELECT count(*) FROM conversations_message"
                         " WHERE injection_flagged IS NOT NULL") == 0  # fmt: skip

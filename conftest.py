"""Fixtures shared by every app's tests: real PostgreSQL (pytest-django's test database on the
embedded server or DATABASE_URL), real Redis (database REDIS_DB=15), real processes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connections, transaction
from django.test import TransactionTestCase
from rest_framework.test import APIClient

from chatbot_site.redis import get_redis

# Emptied by TRUNCATE, when they hold rows, rather than DELETE: their vector index would keep the
# deleted rows' entries (dead tuples every ANN scan still visits) until a vacuum.
TRUNCATED_TABLES = frozenset({"knowledge_chunk"})
# Django's flush empties these and re-creates the same rows (post_migrate): they stay instead.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})
_django_flush = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]


def _empty_the_database(self: TransactionTestCase) -> None:
    """After each transactional test (``django_db(transaction=True)``), every row it left is
    gone, as Django's ``flush`` leaves the database; but by DELETE, with triggers and foreign-key
    checks off for the transaction (``session_replication_role = replica``, a superuser's
    setting, as the embedded server's is). ``flush`` TRUNCATEs every table, which gives each
    table and index a new file: 0.4-0.6 s a test against ~0.05 s, some 500 tests a run."""
    for alias in self._databases_names(include_mirrors=False):  # type: ignore[attr-defined]
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute("SHOW is_superuser")
            if cursor.fetchone()[0] != "on":  # a DATABASE_URL of a plain role: Django's way
                _django_flush(self)
                return
        tables = connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        quote = connection.ops.quote_name
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            for table in sorted(set(tables) - KEPT_TABLES):
                if table not in TRUNCATED_TABLES:
                    cursor.execute(f"DELETE FROM {quote(table)}")  # noqa: S608 (our own tables)
                    continue
                cursor.execute(f"SELECT EXISTS (SELECT FROM {quote(table)})")  # noqa: S608
                if cursor.fetchone()[0]:
                    cursor.execute(f"TRUNCATE {quote(table)}")


TransactionTestCase._fixture_teardown = _empty_the_database  # type: ignore[attr-defined]


# `make test` runs the suite in pytest-xdist workers that take whole files (--dist loadfile), in
# collection order: the slowest files go first, so that none of them is handed out last and runs
# alone while the other workers idle (test_migrations.py alone is ~400 s of one worker's, half
# a 4-worker run's wall time; README, Test suite time). The other files keep their order.
SLOWEST_FILES = (
    "chatbot_site/tests/test_migrations.py",
    "knowledge/tests/test_worker_ingestion.py",
    "conversations/tests/test_chat_stream.py",
    "chatbot_site/tests/test_serve.py",
    "chatbot_site/tests/test_settings.py",
    "knowledge/tests/test_worker_usage.py",
    "knowledge/tests/test_delete_races.py",
    "tests/test_api_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database of its own (the test settings' REDIS_DB)."""
    get_redis.cache_clear()
    get_redis().flushdb()
    yield
    get_redis.cache_clear()


@pytest.fixture
def redis_client() -> redis.Redis:
    return get_redis()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def embedding_provider(settings: Any) -> Iterator[Any]:
    """The ``openai`` embedding backend against the loopback provider (which counts requests;
    ``tests.fake_openai`` says how to make it fail)."""
    from knowledge.embeddings import get_embedder
    from tests.fake_openai import fake_openai

    with fake_openai() as fake:
        settings.EMBEDDING_BACKEND = "openai"
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_API_KEY = "sk-test-not-a-real-key-000000"
        get_embedder.cache_clear()
        try:
            yield fake
        finally:
            get_embedder.cache_clear()


@pytest.fixture
def world():
    """Two tenants, each with keys, a scope, a bot searching a dataset with a document, a
    conversation with a message, usage and audit history. ``world.a`` / ``world.b``."""
    from tests.world import build_world

    return build_world()


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory for a PostgreSQL of a test's own, outside pytest's ``tmp_path``: as root,
    PostgreSQL runs as the ``embedded_postgres`` user, which must reach its data directory, and
    any other pytest session of the same user that starts meanwhile resets
    ``/tmp/pytest-of-<user>`` to mode 0700 (pg_ctl then failed with "Permission denied")."""
    path = Path(tempfile.mkdtemp(prefix="chatbot-test-pg-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

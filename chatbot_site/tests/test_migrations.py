"""Migrations build the whole schema from an empty database, undo cleanly, and match the models."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import sql

from tests.processes import ROOT, child_env

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=child_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def empty_database():
    params = connection.get_connection_params()
    admin = {k: v for k, v in params.items() if k in {"host", "port", "user", "password"}}
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    host = admin.get("host", "localhost")
    user = admin.get("user", "postgres")
    password = admin.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if str(host).startswith("/"):
        url = f"postgresql://{auth}/{name}?host={host}"
    else:
        url = f"postgresql://{auth}{host}:{admin.get('port') or 5432}/{name}"
    yield url, name, admin
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_migrations_run_from_zero_and_back(empty_database):
    url, name, admin = empty_database
    forward = manage("migrate", "--noinput", database_url=url)
    assert forward.returncode == 0, forward.stderr

    with psycopg.connect(dbname=name, **admin) as conn:
        assert conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
        assert {"chunk_embedding_ann", "chunk_dataset_search_gin", "chunk_tags_gin"} <= indexes
        triggers = {row[0] for row in conn.execute("SELECT tgname FROM pg_trigger")}
        assert "tenants_auditlog_no_update_delete" in triggers

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

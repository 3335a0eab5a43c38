"""The database between transactional tests (conftest's ``_empty_the_database``): each test
finds every table empty but for the content types and permissions, as Django's flush left it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from conversations.tests.chatkit import add_passages
from tests.world import build_world

pytestmark = pytest.mark.django_db(transaction=True)


def rows_per_table() -> dict[str, int]:
    """Every table of the test database's public schema (Django's, and any other), by its rows."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def test_a_test_that_fills_every_kind_of_row():
    world = build_world()
    add_passages(world.a)
    filled = {table for table, count in rows_per_table().items() if count}
    assert {"tenants_tenant", "tenants_auditlog", "knowledge_chunk", "knowledge_termstat",
            "conversations_message"} <= filled  # fmt: skip


def test_the_next_test_finds_them_gone_and_the_content_types_kept():
    left = {table: count for table, count in rows_per_table().items() if count}
    assert left.keys() == {"django_migrations", "django_content_type", "auth_permission"}, left
    assert ContentType.objects.count() and Permission.objects.count()

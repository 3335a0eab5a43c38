"""Keyset pagination at depth: a page after a cursor reads from the cursor on, not every row
before it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.models import ActorType, AuditLog
from tests.plans import explain, rows_read
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def test_a_page_far_into_a_list_reads_only_from_its_cursor_on():
    side = build_tenant("acme")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    AuditLog.all_tenants.bulk_create(
        AuditLog(
            tenant=side.tenant,
            # five entries a second: ties that the cursor's id breaks
            created_at=start + dt.timedelta(seconds=i // 5),
            actor_type=ActorType.SYSTEM,
            action="bot.update",
        )
        for i in range(2000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tenants_auditlog")
    client = side.client()
    cursor_value, pages = None, 0
    while pages < 50:  # 1,000 entries in: page 51 of 20
        page = client.get("/v1/audit-logs", {"limit": 20, "cursor": cursor_value or ""}).json()
        cursor_value, pages = page["next_cursor"], pages + 1
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/v1/audit-logs", {"limit": 20, "cursor": cursor_value}).json()
    assert len(page["data"]) == 20
    (sql,) = [q["sql"] for q in queries.captured_queries if "tenants_auditlog" in q["sql"]]
    # The page (21 rows with the look-ahead) and the cursor's own ties, not the 1,000 before.
    assert rows_read(explain(sql)) <= 30

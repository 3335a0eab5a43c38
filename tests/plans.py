"""Query plans for tests that pin how much of a table a page reads."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction


def explain(sql: str) -> dict[str, Any]:
    """``EXPLAIN ANALYZE`` of ``sql`` (a captured query) as PostgreSQL plans it for a large
    table: sequential scans off, so that a test's few hundred rows are read through the index
    they would be read through at scale. Returns the top plan node."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        (plan,) = cursor.fetchone()[0]  # psycopg reads the json
    return dict(plan["Plan"])


def rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans produced or threw away (filter, recheck), over the whole tree."""
    read = 0
    # (A bitmap index scan's rows are the ones its heap scan reads: counted there.)
    if "Scan" in plan["Node Type"] and plan["Node Type"] != "Bitmap Index Scan":
        read += plan["Actual Rows"] * plan.get("Actual Loops", 1)
        read += plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    return int(read) + sum(rows_read(child) for child in plan.get("Plans", []))

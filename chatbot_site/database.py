"""Database helpers every app may use."""

from __future__ import annotations

from django.db import connection


def without_statement_timeout() -> None:
    """No ``DB_STATEMENT_TIMEOUT_SECONDS`` for the rest of the current transaction (call inside
    one): for a deletion whose single statement grows with what it removes (a dataset's chunks,
    a bot's conversations), which the request bound would otherwise make impossible for the
    largest ones (20,000 chunks took 1.6 s here, their term counts included)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")

"""Reads of documents that more than one caller makes: which are still to finish, and how a set
of them ended."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from knowledge.models import Document, DocumentStatus

# A document queued or being ingested: its run has not ended yet.
UNFINISHED = (DocumentStatus.QUEUED, DocumentStatus.PROCESSING)


def documents_unfinished(documents: QuerySet[Document]) -> QuerySet[Document]:
    return documents.filter(status__in=UNFINISHED)


def document_outcomes(documents: QuerySet[Document]) -> dict[str, int]:
    """How many of ``documents`` are in each status, a failure by its error code
    (``"ready"``, ``"failed:no_text"``), in name order."""
    rows = documents.values("status", "error_code").annotate(n=Count("id"))
    outcomes: dict[str, int] = {}
    for row in rows:
        key = f"{row['status']}:{row['error_code'] or ''}".rstrip(":")
        outcomes[key] = outcomes.get(key, 0) + row["n"]
    return dict(sorted(outcomes.items()))

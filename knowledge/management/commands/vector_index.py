from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from knowledge import vector_index


class Command(BaseCommand):
    help = (
        "Show the ANN index on chunk embeddings, or rebuild it as HNSW or IVFFLAT "
        "(default: the VECTOR_INDEX_KIND setting). Rebuild IVFFLAT after a bulk load. "
        "--datasets builds (and drops) large datasets' own indexes now, as celery beat does."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="Drop and create the index.")
        parser.add_argument("--kind", choices=vector_index.KINDS, default=None)
        parser.add_argument(
            "--datasets",
            action="store_true",
            help="Give large datasets their own index now (knowledge.vector_index.maintain).",
        )
        parser.add_argument(
            "--no-concurrently",
            action="store_true",
            help="Build inside a transaction (locks writes; for tests and empty tables).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        kind = options["kind"] or settings.VECTOR_INDEX_KIND
        concurrently = not options["no_concurrently"]
        with connection.cursor() as cursor:
            if options["rebuild"]:
                cursor.execute(f"SELECT count(*) FROM {vector_index.TABLE}")  # noqa: S608
                rows = cursor.fetchone()[0]
                cursor.execute(vector_index.drop_sql(concurrently=concurrently))
                cursor.execute(vector_index.create_sql(kind, rows=rows, concurrently=concurrently))
            current = vector_index.current_kind(cursor)
        report: dict[str, Any] = {
            "index": vector_index.INDEX_NAME,
            "kind": current,
            "setting": settings.VECTOR_INDEX_KIND,
        }
        if options["datasets"]:
            done = vector_index.maintain(concurrently=concurrently)
            report.update(created=len(done["created"]), dropped=len(done["dropped"]))
        with connection.cursor() as cursor:
            report["dataset_indexes"] = len(
                [i for i in vector_index.dataset_indexes(cursor) if i.valid]
            )
        self.stdout.write(json.dumps(report))

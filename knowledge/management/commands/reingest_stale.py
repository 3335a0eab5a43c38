"""Reingest the documents an older ingestion pipeline chunked (knowledge.ingestion.
PIPELINE_VERSION), a batch at a time, through the service the reingest endpoint uses; print the
counts as one line of JSON."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot_site.errors import ApplicationError
from knowledge.ingestion import PIPELINE_VERSION
from knowledge.models import Document, DocumentStatus
from knowledge.selectors import document_outcomes, documents_unfinished
from knowledge.stale import documents_in_flight, documents_reingest_stale, documents_stale
from tenants.management.commands._output import as_command_error, emit
from tenants.models import Tenant
from tenants.selectors import tenant_get_by_slug
from tenants.services import Actor

SHOWN_IDS = 20


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Reingest documents whose chunks an older ingestion pipeline made, keeping the ingestion "
        "queue at most --batch deep (uploads count); run it again, or with --wait, until "
        '"remaining" is 0.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Slug: only this tenant's documents.")
        parser.add_argument(
            "--batch",
            type=positive,
            default=50,
            help="At most this many documents queued or being ingested (every tenant's, uploads "
            "too) after queueing: the rest wait for a later round. Default 50.",
        )
        parser.add_argument(
            "--limit", type=positive, default=None, help="At most this many queued in all."
        )
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also documents whose last run failed (their older chunks are still searched).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count; queue nothing.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Queue a batch whenever there is room, until none is left, and wait for them.",
        )
        parser.add_argument("--timeout", type=float, default=24 * 3600.0)
        parser.add_argument("--poll", type=float, default=5.0, help="Seconds between rounds.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"] and options["wait"]:
            raise CommandError("--dry-run queues nothing to wait for.")
        tenant: Tenant | None = None
        if options["tenant"]:
            try:
                tenant = tenant_get_by_slug(slug=options["tenant"])
            except ApplicationError as exc:
                raise as_command_error(exc) from None
        actor = Actor.system("manage.py reingest_stale")
        include_failed = options["include_failed"]
        stale = documents_stale(tenant=tenant, include_failed=include_failed)
        limit = options["limit"]
        report: dict[str, Any] = {
            "pipeline_version": PIPELINE_VERSION,
            "dry_run": options["dry_run"],
            "stale": stale.count(),
            "in_flight": documents_in_flight(),
        }
        queued: list[Any] = []
        already: list[Any] = []
        missing: list[Any] = []
        deadline = time.monotonic() + options["timeout"]
        while True:
            room = options["batch"] - documents_in_flight()
            if limit is not None:
                room = min(room, limit - len(queued))
            if room > 0:
                run = documents_reingest_stale(
                    actor=actor,
                    limit=room,
                    tenant=tenant,
                    include_failed=include_failed,
                    dry_run=options["dry_run"],
                    skip=frozenset(missing),
                )
                queued += run.queued
                already += run.already_queued
                missing += run.missing_file
            if not options["wait"] or time.monotonic() > deadline:
                break
            left = 0 if limit is not None and len(queued) >= limit else self._left(stale, missing)
            if not left and not self._pending(queued):
                break
            time.sleep(options["poll"])
        left = self._left(stale, missing)
        report.update(
            queued=len(queued),
            already_queued=len(already),
            missing_file=len(missing),
            missing_file_ids=[str(pk) for pk in missing[:SHOWN_IDS]],
            remaining=left - len(queued) if options["dry_run"] else left,
        )
        if not include_failed:
            report["failed_not_queued"] = (
                documents_stale(tenant=tenant, include_failed=True)
                .filter(status=DocumentStatus.FAILED)
                .count()
            )
        if options["wait"]:
            report["outcomes"] = document_outcomes(Document.all_tenants.filter(pk__in=queued))
        emit(self, report)

    @staticmethod
    def _left(stale: Any, missing: list[Any]) -> int:
        """Stale documents still to queue (those whose original is gone cannot be)."""
        return int(stale.exclude(pk__in=missing).count())

    @staticmethod
    def _pending(ids: list[Any]) -> bool:
        return documents_unfinished(Document.all_tenants.filter(pk__in=ids)).exists()

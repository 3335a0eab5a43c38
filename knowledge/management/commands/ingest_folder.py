"""Upload every file under a folder into a dataset through the same intake the API uses, then
(with --wait) follow them until each is ready or failed, and print the outcome counts.
``--charset`` says the folder's text is in a legacy encoding, as an upload's part declares it."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot_site.errors import ApplicationError
from knowledge.intake import document_add_upload
from knowledge.models import Dataset, Document
from knowledge.parsers.text import codec
from knowledge.selectors import document_outcomes, documents_unfinished
from knowledge.services import dataset_create
from tenants.selectors import tenant_get_by_slug
from tenants.services import Actor


class Command(BaseCommand):
    help = (
        "Ingest every file of a folder into a dataset; --wait prints outcomes by status and code."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--dataset", required=True, help="Name; created when missing.")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=3600.0)
        parser.add_argument(
            "--charset",
            default=None,
            help="The encoding the folder's text files are in (koi8-r, windows-1251, shift_jis "
            "...), as an upload's `Content-Type: text/plain; charset=...` declares it: their "
            "text is stored as UTF-8 from it. Files that are UTF-8 already, PDFs and DOCX are "
            "read as they are; a file with bytes the charset cannot read is refused at intake.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        folder: Path = options["folder"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        charset = options["charset"]
        if charset is not None and codec(charset) is None:
            # Checked before anything is uploaded: the intake ignores a charset it does not
            # know (an upload's label), which would have left the whole folder to a guess.
            raise CommandError(
                f"--charset {charset!r} is not a text encoding Python knows "
                "(try koi8-r, windows-1251, iso-8859-1, shift_jis, gb18030, utf-16-le)"
            )
        actor = Actor.system("manage.py ingest_folder")
        tenant = tenant_get_by_slug(slug=options["tenant"])
        dataset = Dataset.objects.for_tenant(tenant).filter(name=options["dataset"]).first()
        if dataset is None:
            dataset = dataset_create(tenant=tenant, actor=actor, name=options["dataset"])
        refused: Counter[str] = Counter()
        ids = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            upload = SimpleUploadedFile(str(path.relative_to(folder)), path.read_bytes())
            upload.charset = charset
            try:
                added = document_add_upload(tenant=tenant, actor=actor, dataset=dataset,
                                            upload=upload, tags=["corpus"])  # fmt: skip
            except ApplicationError as exc:
                refused[exc.code] += 1
                reasons = "; ".join(
                    m for v in exc.details.values() if isinstance(v, list) for m in v
                )
                self.stderr.write(f"refused {upload.name}: {exc.code}: {reasons or exc.message}")
                continue
            ids.append(added.document.pk)
        self.stderr.write(f"submitted {len(ids)} documents, refused at intake {dict(refused)}")
        documents = Document.objects.for_tenant(tenant).filter(pk__in=ids)
        deadline = time.monotonic() + options["timeout"]
        while options["wait"] and time.monotonic() < deadline:
            pending = documents_unfinished(documents).count()
            if not pending:
                break
            self.stderr.write(f"waiting: {pending} of {len(ids)} not finished")
            time.sleep(5)
        report = {"folder": str(folder), "submitted": len(ids),
                  "refused_at_intake": dict(refused), "outcomes": document_outcomes(documents)}  # fmt: skip
        self.stdout.write(json.dumps(report, indent=2))

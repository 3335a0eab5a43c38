"""Stored originals that no document row points at, removed once they are old enough.

A document's original is written to storage inside the transaction that inserts its row, so
a request whose commit fails (the dataset deleted meanwhile, content that became a duplicate,
a process killed mid-upload) leaves a file behind that nothing refers to. Deletes remove their
files after commit; this sweeps up the rest. Only files older than ``ORPHAN_FILE_AGE_SECONDS``
are candidates, so a file whose row is still being committed is never taken.
"""

from __future__ import annotations

import datetime as dt
import posixpath

import structlog
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from knowledge.models import Document

log = structlog.get_logger(__name__)

ROOT = "documents"  # knowledge.models.document_upload_to: documents/<tenant>/<dataset>/<id>


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:
        return [], []


def sweep_orphan_files(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete stored originals older than the age limit that no document refers to, one
    dataset folder at a time (one query per folder, whatever the number of files)."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=settings.ORPHAN_FILE_AGE_SECONDS)
    checked = deleted = 0
    tenants, _ = _listdir(ROOT)
    for tenant_dir in tenants:
        datasets, _ = _listdir(posixpath.join(ROOT, tenant_dir))
        for dataset_dir in datasets:
            folder = posixpath.join(ROOT, tenant_dir, dataset_dir)
            _, files = _listdir(folder)
            if not files:
                continue
            referenced = set(
                Document.all_tenants.filter(file__startswith=folder + "/").values_list(
                    "file", flat=True
                )
            )
            for name in files:
                path = posixpath.join(folder, name)
                checked += 1
                if path in referenced:
                    continue
                try:
                    if default_storage.get_modified_time(path) > cutoff:
                        continue  # perhaps a row still being committed
                    default_storage.delete(path)
                except FileNotFoundError:
                    continue
                deleted += 1
    if deleted:
        log.warning("orphan_files_deleted", deleted=deleted, checked=checked)
    return {"checked": checked, "deleted": deleted}

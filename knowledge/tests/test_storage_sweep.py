"""Stored originals no document refers to are swept once they are old enough."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from knowledge.storage_sweep import sweep_orphan_files
from knowledge.tasks import sweep_orphan_files as sweep_task
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def stored(name: str, *, age_seconds: float) -> str:
    name = default_storage.save(name, ContentFile(b"orphan?"))
    moment = time.time() - age_seconds
    os.utime(default_storage.path(name), (moment, moment))
    return name


def test_old_unreferenced_files_go_and_everything_else_stays(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)  # this test's files only
    settings.ORPHAN_FILE_AGE_SECONDS = 3600
    side = build_tenant("sweep")
    document = side.document
    document.file.save("original", ContentFile(b"# kept"), save=True)
    kept = document.file.name
    os.utime(default_storage.path(kept), (time.time() - 7200,) * 2)  # old, but referenced
    folder = f"documents/{side.tenant.pk}/{side.dataset.pk}"
    orphan = stored(f"{folder}/{uuid.uuid4()}", age_seconds=7200)
    young = stored(f"{folder}/{uuid.uuid4()}", age_seconds=60)  # its row may be committing
    gone_dataset = stored(
        f"documents/{side.tenant.pk}/{uuid.uuid4()}/{uuid.uuid4()}", age_seconds=7200
    )

    result = sweep_orphan_files()

    assert not default_storage.exists(orphan)
    assert not default_storage.exists(gone_dataset)
    assert default_storage.exists(kept) and default_storage.exists(young)
    assert result == {"checked": 4, "deleted": 2}
    assert sweep_task() == {"checked": 2, "deleted": 0}  # the beat task, run in process


def test_the_sweep_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-orphan-files"]
    assert entry["task"] == "knowledge.sweep_orphan_files"

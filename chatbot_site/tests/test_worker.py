from __future__ import annotations

import pytest

from chatbot_site.health import check_worker
from tests.processes import celery_worker, child_env, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_a_real_worker_shows_up_in_health_and_leaves_when_stopped(tmp_path):
    log = tmp_path / "worker.log"
    with celery_worker(child_env(LOG_LEVEL="INFO", LOG_FORMAT="json"), log) as proc:
        try:
            wait_for(lambda: check_worker(True)["status"] == "ok", timeout=60, what="heartbeat")
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert check_worker(True)["workers"] == 1
        proc.terminate()
        proc.wait(timeout=30)
    assert check_worker(True)["status"] == "error"
    ready = [line for line in log.read_text().splitlines() if '"event": "worker_ready"' in line]
    assert ready, "the worker logs through structlog as JSON"

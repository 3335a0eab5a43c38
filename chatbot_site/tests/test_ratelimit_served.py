"""The acceptance case through a real server: 50 parallel requests, a limit of 10."""

from __future__ import annotations

import concurrent.futures
import threading
import urllib.error
import urllib.request

import pytest

from tests.processes import child_env, daphne_server
from tests.world import build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_fifty_parallel_requests_against_a_limit_of_ten(tmp_path):
    side = build_tenant("served")
    side.admin_key.rate_limit_per_minute = 10
    side.admin_key.save(update_fields=["rate_limit_per_minute"])
    barrier = threading.Barrier(50)

    with daphne_server(child_env(), tmp_path / "daphne.log") as base:

        def one(_: int) -> tuple[int, str | None]:
            request = urllib.request.Request(  # noqa: S310 (our own server on loopback)
                f"{base}/v1/scopes", headers={"Authorization": f"Bearer {side.admin_key.plaintext}"}
            )
            barrier.wait()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    return response.status, None
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers.get("Retry-After")

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))

    statuses = [status for status, _ in results]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 40, statuses
    assert all(int(retry) >= 1 for status, retry in results if status == 429)

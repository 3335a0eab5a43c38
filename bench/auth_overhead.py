"""Auth + rate-limit overhead per request, as a ratio to the same request without them.

Runs in one process against a fresh database on the real PostgreSQL and Redis:
  floor   GET /bench/scopes  the scope list view, tenant fixed, no auth, no rate limit
  key     GET /v1/scopes     Authorization: Bearer <api key>  (lookup, hash, checks, GCRA)
  jwt     GET /v1/scopes     Authorization: Bearer <JWT>      (signature, key re-check, GCRA)
The three are interleaved in rounds so that drift hits all alike; each figure is the median of
the per-round means. `make bench` runs it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench import create_database, destroy_database, setup_django

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "50"))


def main() -> int:
    setup_django()
    from django.test.utils import override_settings
    from rest_framework.test import APIClient

    from chatbot_site.redis import get_redis
    from tenants.authentication import issue_token
    from tests.world import build_tenant

    old_name = create_database()
    try:
        get_redis().flushdb()
        side = build_tenant("bench")
        token, _ = issue_token(side.admin_key)
        clients = {
            "floor": (APIClient(), "/bench/scopes"),
            "key": (side.client(), "/v1/scopes"),
            "jwt": (APIClient(HTTP_AUTHORIZATION=f"Bearer {token}"), "/v1/scopes"),
        }
        samples: dict[str, list[float]] = {name: [] for name in clients}
        with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
            for client, path in clients.values():  # warm up caches and connections
                for _ in range(20):
                    status = client.get(path).status_code
                    if status != 200:
                        raise SystemExit(f"{path} answered {status}")
            for _ in range(ROUNDS):
                for name, (client, path) in clients.items():
                    started = time.perf_counter()
                    for _ in range(PER_ROUND):
                        client.get(path)
                    samples[name].append((time.perf_counter() - started) / PER_ROUND * 1000)
        floor = statistics.median(samples["floor"])
        print(f"rounds={ROUNDS} requests/round={PER_ROUND} python={sys.version.split()[0]}")
        print("| request | median ms/request | ratio to floor | overhead ms |")
        print("|---|---|---|---|")
        for name in clients:
            median = statistics.median(samples[name])
            print(f"| {name} | {median:.3f} | {median / floor:.2f} | {median - floor:+.3f} |")
    finally:
        destroy_database(old_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

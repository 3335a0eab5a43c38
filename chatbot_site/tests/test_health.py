from __future__ import annotations

import contextlib
import re
import threading
import time

import pytest
from django.db import connection
from psycopg_pool import PoolTimeout

from chatbot_site.celery import HEARTBEAT_KEY
from chatbot_site.embedded import ensure_postgres, stop_postgres
from chatbot_site.redis import get_redis
from tests.processes import child_env, daphne_server, http_get_json, wait_for

pytestmark = pytest.mark.django_db


def test_health_reports_database_pgvector_and_redis(api_client, redis_client):
    redis_client.zadd(HEARTBEAT_KEY, {"worker-a": time.time()})
    response = api_client.get("/v1/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"]
    checks = body["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["pgvector"]["status"] == "ok"
    assert checks["pgvector"]["version"].startswith("0.8")  # iterative index scans need >= 0.8
    assert checks["redis"]["status"] == "ok"
    assert checks["worker"]["status"] == "ok"
    assert response["Cache-Control"] == "no-store"


def test_health_answers_when_every_pooled_connection_is_busy(api_client, settings):
    """A pool busy with requests is not a database that is down: the probe asks on a
    connection of its own."""
    settings.HEALTH_POOL_WAIT_SECONDS = 0.05
    pool = connection.pool
    assert pool is not None
    held = []
    try:
        with contextlib.suppress(PoolTimeout):
            while True:
                held.append(pool.getconn(timeout=0.05))
        response = api_client.get("/v1/health")
    finally:
        for pooled in held:
            pool.putconn(pooled)

    assert held
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "ok"
    assert response.json()["checks"]["pgvector"]["status"] == "ok"


def test_health_without_a_worker_heartbeat_is_degraded_but_200(api_client):
    response = api_client.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["worker"]["status"] == "error"


def test_stale_worker_heartbeat_counts_as_no_worker(api_client, redis_client, settings):
    redis_client.zadd(
        HEARTBEAT_KEY, {"old": time.time() - settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS - 1}
    )
    worker = api_client.get("/v1/health").json()["checks"]["worker"]
    assert worker["status"] == "error"
    assert worker["last_seen_seconds_ago"] > settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS


def test_redis_down_is_degraded_and_the_api_keeps_answering(api_client, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-listens-here.sock?db=0"
    get_redis.cache_clear()
    response = api_client.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "error"
    assert body["checks"]["worker"]["status"] == "unknown"


def test_health_needs_no_credentials_and_leaks_no_internals(api_client):
    body = api_client.get("/v1/health").content.decode()
    assert "password" not in body.lower()
    assert "/" not in body.split('"version"')[0]  # no socket paths or URLs before the version


@pytest.mark.integration
def test_served_health_turns_503_when_its_database_stops(tmp_path, server_dir):
    """A real daphne process on a PostgreSQL of its own; stop that server → 503, restart → 200."""
    data_dir = server_dir
    server = ensure_postgres(data_dir, database="health")
    # A pool that waits longer than the client does: a probe that waited on it would time out.
    env = child_env(DATABASE_URL=server.url, DB_CONNECT_TIMEOUT="2", DB_POOL_TIMEOUT="30")
    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            status, body, headers = http_get_json(f"{base}/v1/health")
            assert status == 200
            assert body["checks"]["database"]["status"] == "ok"
            assert headers["x-request-id"]

            assert stop_postgres(data_dir)
            # The first probe finds the pool's broken connection; the next ones find a pool that
            # reconnects in the background and answer anyway, within the client's 10 s.
            for _probe in range(3):
                status, body, _ = http_get_json(f"{base}/v1/health")
                assert status == 503
                assert body["status"] == "error"
                assert body["checks"]["database"] == {
                    "status": "error",
                    "error": "database unavailable",
                }

            log = (tmp_path / "daphne.log").read_text()
            # One line for probes that fail one after another (it was one each), with the
            # cause: the outage's, once its connections are refused (even with no statement
            # bound, as here: it was health's own line then, and psycopg_pool's per attempt),
            # and health's own for a probe that failed before the process knew.
            assert log.count("database_outage_started") == 1, log
            assert "cause=" in log.split("database_outage_started")[1].splitlines()[0], log
            assert log.count("health_database_failed") <= 1, log
            assert "Service Unavailable" not in log  # Django's line again, without the cause
            ensure_postgres(data_dir, database="health")
            wait_for(
                lambda: http_get_json(f"{base}/v1/health")[0] == 200,
                timeout=15,
                what="health to recover",
            )
        log = (tmp_path / "daphne.log").read_text()
        own = log.count("health_database_failed")
        assert own <= 1, log
        [ended] = [line for line in log.splitlines() if "database_outage_ended" in line]
        assert own + int(re.search(r"refused=(\d+)", ended)[1]) >= 3, ended
    finally:
        stop_postgres(data_dir)


def test_a_database_that_does_not_answer_is_a_prompt_503(api_client, settings):
    """A server that takes the query and never answers (stopped, or partitioned behind a TCP
    connection the kernel keeps open) held each probe as long as it did not answer: over 200 s
    seen with make run and PostgreSQL stopped (SIGSTOP). Here it is a lock the probe's query
    waits for, released after 5 s whatever happens."""
    import psycopg

    from tests.processes import database_url_of_current_connection

    settings.HEALTH_DATABASE_TIMEOUT_SECONDS = 0.3
    with psycopg.connect(database_url_of_current_connection()) as locker:
        locker.execute("LOCK TABLE pg_extension IN ACCESS EXCLUSIVE MODE")  # until rollback
        release = threading.Timer(5, locker.rollback)
        release.start()
        try:
            started = time.perf_counter()
            first = api_client.get("/v1/health")
            second = api_client.get("/v1/health")  # the first probe still waits: no second one
            elapsed = time.perf_counter() - started
        finally:
            release.cancel()
            locker.rollback()
    assert (first.status_code, second.status_code) == (503, 503)
    assert first.json()["checks"]["database"] == {
        "status": "error",
        "error": "database unavailable",
    }
    # Every non-2xx answer is the error envelope (API.md), with Retry-After as other 503s.
    for answer in (first, second):
        assert answer.json()["status"] == "error"
        assert answer.json()["error"] == {
            "code": "service_unavailable",
            "message": "The database does not answer.",
            "details": {},
            "request_id": answer["X-Request-ID"],
        }
        assert answer["Retry-After"] == "5"
    assert elapsed < 4, elapsed  # about 0.3 s; the lock holds 5 s; wide for a loaded machine
    wait_for(lambda: api_client.get("/v1/health").status_code == 200, timeout=10, what="recovery")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_once_health_says_the_database_is_back_the_api_is_served(tmp_path):
    """After the database went away and came back, health (a connection of its own) said ok
    while the pool waited out its reconnect backoff (1, 2, 4, 8 ... s between attempts): every
    API request failed meanwhile, 16.5 s after a 30 s outage under make run. Now the pool
    gives a failed reconnection up after a second and the next request starts another."""
    from tests.processes import DatabaseProxy, raw_request, request_head
    from tests.world import build_tenant

    side = build_tenant("comeback")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_CONNECT_TIMEOUT="1", DB_POOL_TIMEOUT="2")
    head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            assert raw_request(base, head).startswith(b"HTTP/1.1 200 ")
            proxy.down()  # the server restarts: connections closed, new ones refused
            for _probe in range(12):  # an outage of ~18 s, watched as a balancer would
                assert http_get_json(f"{base}/v1/health")[0] == 503
                time.sleep(1)
            proxy.up()
            wait_for(lambda: http_get_json(f"{base}/v1/health")[0] == 200, timeout=10,
                     what="health to see the database")  # fmt: skip
            answers = [raw_request(base, head)[:12] for _request in range(4)]
    finally:
        proxy.close()
    assert answers == [b"HTTP/1.1 200"] * 4, answers

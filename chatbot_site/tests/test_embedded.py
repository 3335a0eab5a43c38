"""The embedded servers start once however many processes ask at the same moment, listen on
unix sockets only, and are reused afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from chatbot_site.embedded import (
    _redis_socket_path,
    ensure_postgres,
    ensure_redis,
    stop_postgres,
    stop_redis,
)
from tests.processes import ROOT, VENV_BIN

pytestmark = pytest.mark.integration

RACE = """
import json, sys
from pathlib import Path
from chatbot_site.embedded import ensure_postgres, ensure_redis
data = Path(sys.argv[1])
pg = ensure_postgres(data, database="race")
print(json.dumps({"pg": pg.socket_dir, "redis": str(ensure_redis(data))}))
"""


def test_processes_starting_at_once_share_one_server_of_each_kind(server_dir):
    data = server_dir / "d"
    data.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(data)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        assert len({r["pg"] for r in results}) == 1
        assert len({r["redis"] for r in results}) == 1

        # Reused, not restarted: the same server answers a later caller.
        again = ensure_postgres(data, database="race")
        assert again.socket_dir == results[0]["pg"]
        with psycopg.connect(host=again.socket_dir, user="postgres", dbname="race") as conn:
            assert conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0] >= 1
            # Unix socket only: the server listens on no TCP address.
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""
        sock = ensure_redis(data)
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.ping()
        assert client.config_get("port")["port"] == "0"
    finally:
        stop_redis(data)
        stop_postgres(data)
    assert not stop_redis(data)
    assert not stop_postgres(data)


def test_long_data_paths_fall_back_to_a_short_socket_path(tmp_path):
    deep = tmp_path.joinpath(*["very-long-directory-name"] * 6)
    path = _redis_socket_path(deep)
    assert len(str(path)) <= 100
    assert path != _redis_socket_path(tmp_path / "other")


def test_stop_ends_the_api_and_worker_served_from_the_checkout_only(tmp_path):
    """`make run` serves from the checkout: `make stop` stopped its PostgreSQL and Redis but
    left its daphne and celery running, answering 503 over a stopped database and holding the
    port, so the next `make run` could not serve. Now they are stopped too; a process of the
    same checkout that is not one of them, and a daphne served from elsewhere, are left."""
    from chatbot_site.embedded import stop_served
    from tests.processes import child_env

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = child_env(PYTHONPATH=str(ROOT))

    def daphne(cwd) -> subprocess.Popen[bytes]:
        # Port 0: a port picked free could be bound by another process first, and daphne
        # exited before `make stop` could find it.
        argv = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", "0",
                "chatbot_site.asgi:application"]  # fmt: skip
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip

    served, other = daphne(tmp_path), daphne(elsewhere)
    bystander = subprocess.Popen(["sleep", "60"], cwd=tmp_path)
    try:
        assert stop_served(tmp_path) == 1
        assert served.wait(timeout=20) is not None
        assert other.poll() is None and bystander.poll() is None
    finally:
        for proc in (served, other, bystander):
            proc.kill()
            proc.wait()


def test_stop_ends_make_runs_supervised_worker_for_good(tmp_path):
    """`make run`'s worker runs under chatbot_site.supervise: `make stop` told the worker alone
    to stop, its supervisor started it again a second later, and that worker (its settings)
    started the embedded servers `make stop` had just stopped. Now the supervisor is told, and
    it stops its worker for good."""
    from chatbot_site.embedded import stop_served
    from tests.processes import child_env, wait_for

    worker = tmp_path / "celery"  # a stand-in with the worker's name: `sh .../celery`
    worker.write_text("#!/bin/sh\nsleep 600\n")
    worker.chmod(0o755)
    argv = [str(VENV_BIN / "python"), "-m", "chatbot_site.supervise", "--grace", "5", "--",
            "/bin/sh", str(worker)]  # fmt: skip
    supervisor = subprocess.Popen(
        argv, cwd=tmp_path, env=child_env(PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE
    )
    try:
        assert supervisor.stderr is not None
        assert b"worker started" in supervisor.stderr.readline()

        def worker_runs() -> bool:  # its child has become `sh .../celery`, not the fork still
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if str(worker).encode() in cmdline.read_bytes():
                        return True
                except OSError:  # it ended meanwhile
                    continue
            return False

        wait_for(worker_runs, timeout=30, what="the worker")
        assert stop_served(tmp_path) == 1
        assert supervisor.wait(timeout=30) == 0
        said = supervisor.stderr.read().decode()
        assert "starting it again" not in said and "worker stopped" in said
    finally:
        supervisor.kill()
        supervisor.wait()

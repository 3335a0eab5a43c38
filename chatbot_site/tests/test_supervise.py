"""`make run`'s worker under chatbot_site.supervise: a real Celery worker killed with SIGKILL
is started again (its orphaned pool children killed), and SIGTERM stops it for good."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from chatbot_site.health import check_worker
from chatbot_site.redis import get_redis
from chatbot_site.tasks import ping
from tests.processes import VENV_BIN, child_env, running, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_reply(key: str) -> bytes | None:
    return wait_for(lambda: get_redis().get(f"chatbot:ping:{key}"), timeout=60, what="ping")


def test_a_worker_killed_with_sigkill_is_started_again_and_sigterm_stops_it(tmp_path):
    log = tmp_path / "supervise.log"
    argv = [
        str(VENV_BIN / "python"), "-m", "chatbot_site.supervise", "--grace", "20", "--",
        str(VENV_BIN / "celery"), "-A", "chatbot_site", "worker", "--loglevel=INFO",
        "--concurrency=1", "--pool=prefork", "--without-mingle", "--without-gossip",
        "-n", f"supervised-{os.getpid()}@%h",
    ]  # fmt: skip
    with running(argv, child_env(), log) as supervisor:
        try:
            first = wait_for(lambda: children(supervisor.pid), timeout=30, what="a worker")[0]
            pool = wait_for(lambda: children(first), timeout=60, what="its pool child")
            ping.delay("before")
            wait_for_reply("before")

            # The worker's main process only: its pool child is orphaned.
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: not alive(pool[0]), timeout=30, what="the orphan killed")
            second = wait_for(
                lambda: [pid for pid in children(supervisor.pid) if pid != first],
                timeout=30,
                what="a worker started again",
            )[0]
            ping.delay("after")
            wait_for_reply("after")
            wait_for(lambda: check_worker(True)["status"] == "ok", timeout=30, what="heartbeat")
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert "killed by SIGKILL" in log.read_text()

        supervisor.send_signal(signal.SIGTERM)  # the supervisor only: make run's trap
        assert supervisor.wait(timeout=40) == 0
        assert not alive(second)
    assert "[supervise] worker stopped" in log.read_text()


def test_an_embedded_redis_killed_with_sigkill_is_started_again(tmp_path):
    """A Redis of this test's own under tmp_path (never the suite's): killed, the supervisor's
    watch starts it again; the command it supervises meanwhile runs on untouched."""
    from chatbot_site.embedded import _redis_answers, ensure_redis, stop_redis

    sock = ensure_redis(tmp_path)
    pidfile = tmp_path / "redis" / "redis.pid"
    first = int(pidfile.read_text().split()[0])
    env = child_env()
    env.pop("REDIS_URL", None)
    argv = [
        str(VENV_BIN / "python"), "-m", "chatbot_site.supervise", "--name", "sleeper",
        "--embedded", str(tmp_path), "--check", "0.2", "--", "sleep", "600",
    ]  # fmt: skip
    log = tmp_path / "supervise.log"
    try:
        with running(argv, env, log) as supervisor:
            sleeper = wait_for(lambda: children(supervisor.pid), timeout=30, what="sleep")[0]
            os.kill(first, signal.SIGKILL)
            try:
                # The line comes once the start returns, after Redis answers with its new pid.
                wait_for(
                    lambda: _redis_answers(sock)
                    and int(pidfile.read_text().split()[0]) != first
                    and "[supervise] embedded redis was gone: started it again" in log.read_text(),
                    timeout=30,
                    what="Redis started again",
                )
            except AssertionError:
                raise AssertionError(log.read_text()[-3000:]) from None
            assert alive(sleeper)
    finally:
        stop_redis(tmp_path)

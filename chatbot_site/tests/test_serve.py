"""``python -m chatbot_site.serve``: `make run` and the container serve the API with
``API_PROCESSES`` daphne processes on one port (real processes, the test database)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot_site.serve import processes_setting
from tests.processes import ROOT, announced, child_env, http_get_json, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
                if int(stat[1]) == pid and stat[0] != "Z":
                    found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    return [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def _answers(base: str) -> bool:
    try:
        status, _body, _headers = http_get_json(f"{base}/v1/health")
    except (OSError, ValueError):
        return False
    return status in (200, 503)


@contextlib.contextmanager
def _served(tmp_path: Path, processes: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The launcher on a port of its own choosing (``-p 0``), which it reports: a port picked
    free by the test and bound by the launcher later could be taken in between by another of
    the suite's workers."""
    argv = [sys.executable, "-m", "chatbot_site.serve", "-b", "127.0.0.1", "-p", "0",
            "--access-log", "/dev/null", "chatbot_site.asgi:application"]  # fmt: skip
    path = tmp_path / "serve.log"
    log = path.open("wb")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=child_env(API_PROCESSES=processes), stdout=log, stderr=log
    )
    try:
        try:
            base = wait_for(lambda: announced(path), timeout=60, what="the launcher's address")
            wait_for(lambda: _answers(base), timeout=60, what="the launcher's daphne to answer")
        except AssertionError:
            raise AssertionError(path.read_text()[-3000:]) from None
        yield proc, base
    finally:
        family = [proc.pid, *_children(proc.pid)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        log.close()


def _listening_sockets(pid: int, port: int) -> set[str]:
    """Inodes of the sockets ``pid`` holds that listen on ``port`` (``/proc/net/tcp``)."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            listening.add(fields[9])
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                held.add(target[len("socket:[") : -1])
    return held & listening


def test_two_daphne_processes_each_listen_on_the_port_and_stop_with_the_launcher(tmp_path):
    """Two daphne children of the launcher, each holding a listening socket of its own on the
    port (the launcher holds none); requests are answered. SIGTERM to the launcher stops both,
    and it exits 0."""
    with _served(tmp_path, "2") as (proc, base):
        port = int(base.rsplit(":", 1)[1])
        children = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid),
                            timeout=10, what="two daphne processes")  # fmt: skip
        assert all(Path(_cmdline(pid)[1]).name == "daphne" for pid in children)
        held = [_listening_sockets(pid, port) for pid in children]
        assert [len(sockets) for sockets in held] == [1, 1] and held[0] != held[1]
        assert _listening_sockets(proc.pid, port) == set()
        assert all(_answers(base) for _ in range(5))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_a_second_launcher_on_a_port_in_use_refuses_to_start(tmp_path):
    """Sockets with SO_REUSEPORT would share a port with another such server (a `make run`
    already serving): the launcher checks the address is free first and stops if not."""
    with _served(tmp_path, "2") as (_proc, base):
        port = base.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "chatbot_site.serve", "-b", "127.0.0.1", "-p", port,
                "chatbot_site.asgi:application"]  # fmt: skip
        second = subprocess.run(
            argv,
            cwd=ROOT,
            env=child_env(API_PROCESSES="2"),
            capture_output=True,
            timeout=30,
        )
        assert second.returncode != 0
        assert b"Address already in use" in second.stderr


def test_a_daphne_that_exits_stops_its_sibling_and_the_launcher_reports_it(tmp_path):
    """Not quietly serving on fewer processes: one daphne killed, the other is stopped and
    the launcher exits non-zero (a container restarts, `make run` ends)."""
    with _served(tmp_path, "2") as (proc, _base):
        children = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid),
                            timeout=10, what="two daphne processes")  # fmt: skip
        os.kill(children[0], signal.SIGKILL)
        assert proc.wait(timeout=30) != 0
        assert not Path(f"/proc/{children[1]}").exists()
        assert "exited" in (tmp_path / "serve.log").read_text()


def test_one_process_is_daphne_itself(tmp_path):
    """``API_PROCESSES=1``: the launcher becomes daphne (no parent process in between)."""
    with _served(tmp_path, "1") as (proc, _base):
        assert Path(_cmdline(proc.pid)[1]).name == "daphne"
        assert _children(proc.pid) == []


def test_api_processes_is_validated():
    assert processes_setting({"API_PROCESSES": "3"}) == 3
    assert processes_setting({}) == processes_setting({"API_PROCESSES": " "}) == 1
    for wrong in ("0", "-1", "two"):
        with pytest.raises(SystemExit, match="API_PROCESSES"):
            processes_setting({"API_PROCESSES": wrong})


def test_make_stop_stops_the_launcher_and_its_daphne_processes(tmp_path):
    """`make stop` finds `make run`'s API by its command line: the launcher is told, and it
    stops its daphne processes."""
    from chatbot_site.embedded import stop_served

    argv = [sys.executable, "-m", "chatbot_site.serve", "-b", "127.0.0.1", "-p", "0",
            "chatbot_site.asgi:application"]  # fmt: skip
    env = child_env(API_PROCESSES="2", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        children = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid),
                            timeout=10, what="two daphne processes")  # fmt: skip
        assert stop_served(tmp_path) == 1
        assert proc.wait(timeout=20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_port_0_serves_on_a_port_of_the_kernels_choosing_and_reports_it(tmp_path, processes):
    """``-p 0``: the launcher reported no port (one process: daphne, whose own line is logged
    at INFO only, which the project's logging keeps quiet), so a caller had to pick a free port
    itself and another process could take it before daphne bound it. The address it reports is
    the one that answers, held by the daphne processes."""
    with _served(tmp_path, processes) as (proc, base):
        port = int(base.rsplit(":", 1)[1])
        assert port != 0
        servers = [proc.pid]
        if processes == "2":
            servers = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid),
                               timeout=10, what="two daphne processes")  # fmt: skip
        assert all(_listening_sockets(pid, port) for pid in servers)
        assert _answers(base)

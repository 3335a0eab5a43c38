"""`make run`'s worker, kept running: ``python -m chatbot_site.supervise COMMAND...``.

Runs COMMAND (the Celery worker with beat) in a process group of its own and starts it again
when it exits without being asked to — killed (``SIGKILL``, the OOM killer), crashed, or
stopped by a lost database at start — after what is left of its group (a prefork pool's
children, orphaned by a killed parent, went on holding memory and a document) is killed. The
waits between starts double from 1 s to 30 s while it keeps dying within a minute of starting,
and each exit and start is one line on stderr, so the operator sees what happened. ``SIGTERM``
or ``SIGINT`` to the supervisor stop the command (``SIGTERM`` to its group, ``SIGKILL`` after
``--grace`` seconds) and end the supervisor.

``--embedded DATA_DIR`` also watches the embedded PostgreSQL (unless ``DATABASE_URL`` is set)
and Redis (unless ``REDIS_URL`` is set) under DATA_DIR, every ``--check`` seconds: one whose
process is gone (``SIGKILL``, the OOM killer, a crash) is started again, with a line on stderr,
and the API and the worker reconnect by themselves. A server that is there but frozen
(``SIGSTOP``) is not touched. Before, the API answered ``503`` until the operator ran `make run`
again, and nothing said so but the outage's log lines.

Before, `make run` started the worker once: one killed with ``SIGKILL`` left the API serving with
no worker until `make run` was started again (health ``degraded``, uploads ``queued`` forever).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

FIRST_WAIT = 1.0
LONGEST_WAIT = 30.0
# A run that lasted this long was not a crash at start: the next wait starts again at FIRST_WAIT.
STEADY_SECONDS = 60.0


def say(name: str, text: str) -> None:
    print(f"[supervise] {name} {text}", file=sys.stderr, flush=True)


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the command's group (its warm shutdown), SIGKILL after ``grace`` seconds."""
    kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
    # A pool child still finishing its task outlives a parent that stopped on time.
    kill_group(proc.pid, signal.SIGKILL)


def _pid_alive(pidfile: Path) -> bool | None:
    """Whether the process ``pidfile`` names runs; None without a pidfile."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_embedded(data_dir: Path) -> list[str]:
    """Start again the embedded servers under ``data_dir`` whose process is gone: what it did."""
    from chatbot_site import embedded

    done = []
    if not os.environ.get("DATABASE_URL"):
        pgdata = (data_dir / "postgres").resolve()
        # Only a server that ran and whose postmaster is gone (its pidfile left behind).
        if _pid_alive(pgdata / "postmaster.pid") is False:
            embedded.ensure_postgres(data_dir)
            done.append("postgres")
    redis_pidfile = data_dir / "redis" / "redis.pid"
    if not os.environ.get("REDIS_URL") and _pid_alive(redis_pidfile) is False:
        embedded.ensure_redis(data_dir)
        done.append("redis")
    return done


def watch_embedded(data_dir: Path, every: float, stopping: threading.Event) -> None:
    while not stopping.wait(every):
        try:
            for server in check_embedded(data_dir):
                say(f"embedded {server}", "was gone: started it again")
        except Exception as exc:  # the next check tries again
            say("embedded server", f"could not be started: {type(exc).__name__}: {exc}")


def supervise(
    argv: Sequence[str],
    *,
    name: str,
    grace: float,
    embedded: Path | None = None,
    check: float = 2.0,
) -> int:
    stopping = threading.Event()
    if embedded is not None:
        threading.Thread(
            target=watch_embedded, args=(embedded, check, stopping), daemon=True
        ).start()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait = FIRST_WAIT
    while not stopping.is_set():
        started = time.monotonic()
        # The operator's own command line (make run's), not input.
        proc = subprocess.Popen(list(argv), start_new_session=True)  # noqa: S603
        say(name, f"started (pid {proc.pid})")
        while proc.poll() is None and not stopping.is_set():
            stopping.wait(0.5)
        if stopping.is_set():
            stop_group(proc, grace)
            say(name, "stopped")
            return 0
        # Exited unasked: what is left of its group (pool children) goes with it.
        kill_group(proc.pid, signal.SIGKILL)
        ran = time.monotonic() - started
        wait = FIRST_WAIT if ran >= STEADY_SECONDS else wait
        say(name, f"{describe(proc.returncode)} after {ran:.0f} s; starting it again in {wait:g} s")
        if stopping.wait(wait):
            break
        wait = min(wait * 2, LONGEST_WAIT)
    say(name, "stopped")
    return 0


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot_site.supervise")
    parser.add_argument("--name", default="worker", help="what the lines on stderr call it")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument(
        "--embedded", type=Path, metavar="DATA_DIR", help="start dead embedded servers again"
    )
    parser.add_argument("--check", type=float, default=2.0, help="seconds between those checks")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no command to run")
    return supervise(
        command,
        name=options.name,
        grace=options.grace,
        embedded=options.embedded,
        check=options.check,
    )


if __name__ == "__main__":
    sys.exit(main())

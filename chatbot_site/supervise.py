"""`make run`'s worker, kept running: ``python -m chatbot_site.supervise COMMAND...``.

Runs COMMAND (the Celery worker with beat) in a process group of its own and starts it again
when it exits without being asked to — killed (``SIGKILL``, the OOM killer), crashed, or
stopped by a lost database at start — after what is left of its group (a prefork pool's
children, orphaned by a killed parent, went on holding memory and a document) is killed. The
waits between starts double from 1 s to 30 s while it keeps dying within a minute of starting,
and each exit and start is one line on stderr, so the operator sees what happened. ``SIGTERM``
or ``SIGINT`` to the supervisor stop the command (``SIGTERM`` to its group, ``SIGKILL`` after
``--grace`` seconds) and end the supervisor.

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


def supervise(argv: Sequence[str], *, name: str, grace: float) -> int:
    stopping = threading.Event()

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
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no command to run")
    return supervise(command, name=options.name, grace=options.grace)


if __name__ == "__main__":
    sys.exit(main())

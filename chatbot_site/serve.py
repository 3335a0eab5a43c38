"""``python -m chatbot_site.serve``: the API served by ``API_PROCESSES`` daphne processes on one
port (`make run`, the container's command).

One daphne process runs a chat turn's Python under one GIL: on two cores it served 55-80 JSON
turns/s at 16 clients, the second core mostly idle but for PostgreSQL (docs/BENCHMARKS.md, "Chat
overhead"). daphne has no workers option, so this launcher binds the address and starts that many
daphne processes on it (``daphne --fd``), each with a listening socket of its own on the same port
(``SO_REUSEPORT``): the kernel spreads new connections over them by their addresses' hash. One
socket shared by all of them (gunicorn's and uvicorn's ``--workers`` model) spread them badly:
16 keep-alive clients connecting at once went 16/0, 3/13 and 11/5 to two daphne processes
(Twisted accepts every pending connection when it wakes), against 9/7, 6/10, 11/5, 8/8 with a
socket each. The processes share nothing but the port: rate limits, quotas and a session's claim
are in Redis, the rest in PostgreSQL; what each keeps (query vectors, the scope's topic vectors,
verdicts) is a cache.

With one process (the default) it simply becomes daphne (``exec``), as before. With more it stays their
parent: SIGTERM or SIGINT is passed to every daphne, which finish their requests and streams
(a turn whose database is frozen is stored or logged at exit, as with one); when any of them
exits on its own the others are stopped and the launcher exits with its status, so the
container's restart policy (or the person who ran `make run`) sees it, rather than a server
quietly serving on fewer processes.

    python -m chatbot_site.serve -b 0.0.0.0 -p 8000 [daphne options] chatbot_site.asgi:application

``-b``/``--bind`` and ``-p``/``--port`` are the launcher's; every other argument goes to each
daphne as given. ``-p 0``: a port of the kernel's choosing, reported on stderr
(``chatbot_site.serve: N daphne process(es) listening on http://HOST:PORT``; with more than one
process the address is reported whatever the port).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

# One unless API_PROCESSES says more: two on two cores were not clearly better on the shared
# machines measured (more turns/s where a core was free, fewer where none was; the p95 at 16
# clients never better: docs/BENCHMARKS.md, 2026-12-07 evening), and each costs 500-650 MB.
DEFAULT_PROCESSES = 1
# After SIGTERM, how long the daphne processes get before SIGKILL: within `make stop`'s 15 s
# (chatbot_site.embedded.stop_served), which would otherwise kill the launcher before them.
STOP_SECONDS = 12.0


def processes_setting(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """``API_PROCESSES``: daphne processes to serve with, ``DEFAULT_PROCESSES`` when unset
    (each holds its own model, caches and connection pool: 500-650 MB)."""
    raw = environ.get("API_PROCESSES", "").strip()
    if not raw:
        return DEFAULT_PROCESSES
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"API_PROCESSES must be a whole number, not {raw!r}") from None
    if value < 1:
        raise SystemExit(f"API_PROCESSES must be at least 1, not {value}")
    return value


def daphne_path() -> str:
    """The daphne beside this interpreter (the virtualenv's), else the one on ``PATH``."""
    beside = Path(sys.executable).parent / "daphne"
    if beside.exists():
        return str(beside)
    found = shutil.which("daphne")
    if found is None:
        raise SystemExit("daphne is not installed")
    return found


def listen(host: str, port: int, *, shared_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` that child processes inherit; with
    ``shared_port``, one of several on the same port (``SO_REUSEPORT``: the kernel spreads new
    connections over them)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(socket.SOMAXCONN)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot_site.serve", add_help=True)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args, daphne_args = parser.parse_known_args(list(argv))
    count = processes_setting()
    daphne = daphne_path()
    if count == 1:
        if args.port == 0:
            # A port of the kernel's choosing, bound here and reported (daphne logs it only at
            # INFO, which the project's logging keeps quiet): a caller that needs a free port
            # asks for 0 and reads it, rather than picking one that another process may take
            # before daphne binds it.
            sock = listen(args.bind, 0)
            if sock.family == socket.AF_INET:  # daphne --fd: IPv4 only (below)
                announce(args.bind, sock.getsockname()[1], count)
                argv_fd = [daphne, "--fd", str(sock.fileno()), *daphne_args]
                os.execv(daphne, argv_fd)  # noqa: S606 (our own daphne, the operator's arguments)
            sock.close()
        argv_one = [daphne, "-b", args.bind, "-p", str(args.port), *daphne_args]
        os.execv(daphne, argv_one)  # noqa: S606 (our own daphne, the operator's arguments)
    # Port 0: the port the probe was given may be taken before the shared sockets bind it;
    # then another is picked.
    for attempt in range(1, 6):
        # A plain bind first: it fails while anything listens on the address, which the
        # SO_REUSEPORT sockets below would not (a second `make run` would share the port with
        # the first, each answering some connections).
        with listen(args.bind, args.port) as probe:
            if probe.family != socket.AF_INET:
                # daphne's --fd adopts IPv4 sockets only (Twisted's fd endpoint string cannot
                # say another family).
                raise SystemExit(
                    f"API_PROCESSES={count} needs an IPv4 address to bind: {args.bind}"
                )
            port = probe.getsockname()[1]
        try:
            socks = shared_sockets(args.bind, port, count)
            break
        except OSError as exc:
            if args.port != 0 or exc.errno != errno.EADDRINUSE or attempt == 5:
                raise
    announce(args.bind, port, count)
    stopping = catch_stop_signals()  # before the children exist: none is left without us
    children = [
        subprocess.Popen(  # noqa: S603 (our own daphne, the operator's arguments)
            [daphne, "--fd", str(sock.fileno()), *daphne_args], pass_fds=[sock.fileno()]
        )
        for sock in socks
    ]
    for sock in socks:
        sock.close()  # the children hold them
    return supervise(children, stopping)


def shared_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets sharing ``host:port`` (``SO_REUSEPORT``); none is left open
    when one cannot bind."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(listen(host, port, shared_port=True))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def announce(host: str, port: int, count: int) -> None:
    """The address served, on stderr: with ``-p 0``, the only place that says which port."""
    print(
        f"chatbot_site.serve: {count} daphne process{'es' if count > 1 else ''} "
        f"listening on http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )


def catch_stop_signals() -> list[int]:
    """SIGTERM and SIGINT from now on only noted, in the list returned."""
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return stopping


def supervise(children: list[subprocess.Popen[bytes]], stopping: list[int]) -> int:
    """Until a signal noted in ``stopping`` stops them all or one of them exits; the exit status
    to report."""
    status = 0
    while not stopping:
        exited = [child for child in children if child.poll() is not None]
        if exited:
            status = exited[0].returncode or 1
            print(
                f"chatbot_site.serve: daphne {exited[0].pid} exited ({exited[0].returncode}); "
                "stopping the others",
                file=sys.stderr,
                flush=True,
            )
            break
        time.sleep(0.2)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            if child.poll() is None:
                child.send_signal(stopping[0] if stopping else signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

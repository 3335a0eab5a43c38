"""Parse untrusted bytes in a child process with limits on memory, CPU time and wall time.

The worker calls :func:`parse_isolated`; it starts ``python -m knowledge.parsers.sandbox`` with
``RLIMIT_AS`` / ``RLIMIT_CPU`` / ``RLIMIT_FSIZE`` set, passes the file path, and reads JSON
blocks from stdout. A bomb that exhausts memory, a parser stuck in a loop or a crash kills only
the child and ends as a specific error code; the worker keeps serving.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from knowledge.parsers import Block, Limits, ParseError, clean_text, parse

ROOT = Path(__file__).resolve().parent.parent.parent


def _apply_limits(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # writes no files
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


def _child_env() -> dict[str, str]:
    """A minimal environment: nothing of the worker's (credentials, settings) reaches a parser."""
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip


class _Zygote:
    """The worker process's handle on its parser zygote (knowledge.parsers.zygote)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = 0
        self.buffer = b""

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "knowledge.parsers.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=_child_env(),
            start_new_session=True,
        )
        atexit.register(self.stop)
        self.owner, self.buffer = os.getpid(), b""
        return proc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None and self.owner == os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def request(self, payload: dict[str, object], timeout: float) -> dict[str, object] | None:
        """The zygote's answer, or None when it could not give one (then it is restarted)."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None or self.owner != os.getpid():
                self.proc = self._start()
            proc = self.proc
            assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 (PIPE above)
            try:
                proc.stdin.write(json.dumps(payload).encode() + b"\n")
                proc.stdin.flush()
                fd = proc.stdout.fileno()
                deadline = time.monotonic() + timeout
                while b"\n" not in self.buffer:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                        raise TimeoutError
                    piece = os.read(fd, 1 << 20)
                    if not piece:
                        raise EOFError
                    self.buffer += piece
                line, _, self.buffer = self.buffer.partition(b"\n")
                return dict(json.loads(line))
            except (OSError, EOFError, TimeoutError, ValueError):
                self.stop()
                return None


_zygote = _Zygote()


def parse_isolated(
    path: Path,
    content_type: str,
    *,
    limits: Limits,
    memory_bytes: int,
    cpu_seconds: int,
    wall_seconds: float,
) -> list[Block]:
    """Parse ``path`` in a forked, limited child of the warm zygote; if the zygote cannot
    answer, in a freshly started limited process instead."""
    payload = _zygote.request(
        {"content_type": content_type, "path": str(path), "limits": asdict(limits),
         "memory": memory_bytes, "cpu": cpu_seconds, "wall": wall_seconds},
        timeout=wall_seconds + 30,
    )  # fmt: skip
    if payload is None:
        return _spawn_isolated(path, content_type, limits=limits, memory_bytes=memory_bytes,
                               cpu_seconds=cpu_seconds, wall_seconds=wall_seconds)  # fmt: skip
    return _blocks(payload)


def _blocks(payload: dict[str, object]) -> list[Block]:
    if "error" in payload:
        error = payload["error"]
        assert isinstance(error, dict)  # noqa: S101 (protocol)
        raise ParseError(str(error["code"]), str(error["message"]), str(error.get("detail", "")))
    raw = payload["blocks"]
    assert isinstance(raw, list)  # noqa: S101 (protocol)
    blocks = [Block(**block) for block in raw]
    for block in blocks:  # the child cleaned them; the parent trusts no child
        block.text = clean_text(block.text)
        block.heading_path = [clean_text(h) for h in block.heading_path]
    return blocks


def _spawn_isolated(
    path: Path,
    content_type: str,
    *,
    limits: Limits,
    memory_bytes: int,
    cpu_seconds: int,
    wall_seconds: float,
) -> list[Block]:
    command = [sys.executable, "-m", "knowledge.parsers.sandbox", content_type, str(path),
               json.dumps(asdict(limits))]  # fmt: skip
    env = _child_env()
    proc = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        preexec_fn=lambda: _apply_limits(memory_bytes, cpu_seconds),
    )
    try:
        out, err = proc.communicate(timeout=wall_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ParseError(
            "parse_timeout", f"Parsing took longer than {wall_seconds:.0f} s."
        ) from None
    if proc.returncode == 0:
        return _blocks(json.loads(out))
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU):
        raise ParseError("parse_timeout", "Parsing used more CPU time than allowed.")
    if b"MemoryError" in err or proc.returncode in (-signal.SIGSEGV, -signal.SIGABRT):
        raise ParseError("parse_memory", "Parsing needed more memory than allowed.")
    raise ParseError("parser_crash", f"The parser failed (exit {proc.returncode}).")


def _main() -> int:
    content_type, path, limits_json = sys.argv[1], sys.argv[2], sys.argv[3]
    limits = Limits(**json.loads(limits_json))
    data = Path(path).read_bytes()
    try:
        blocks = parse(content_type, data, limits)
    except ParseError as exc:
        payload: dict[str, object] = {
            "error": {"code": exc.code, "message": exc.message, "detail": exc.detail}
        }
    except MemoryError:
        payload = {
            "error": {"code": "parse_memory", "message": "Parsing needed more memory than allowed."}
        }
    except RecursionError:
        payload = {
            "error": {"code": "too_deeply_nested", "message": "The document is nested too deeply."}
        }
    else:
        payload = {"blocks": [asdict(b) for b in blocks]}
    sys.stdout.write(json.dumps(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

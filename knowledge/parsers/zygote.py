"""A parser zygote: one long-lived child process per worker process that has the parser
libraries imported already and forks a fresh, resource-limited grandchild per document.

Starting Python and importing pdfplumber for every document costs ~0.15-0.3 s; a fork of a
warm zygote costs milliseconds. Isolation is unchanged: each document is parsed in its own
process with ``RLIMIT_AS`` / ``RLIMIT_CPU`` / ``RLIMIT_FSIZE`` and a wall-clock deadline, and the
zygote itself never parses. Protocol (one JSON object per line): the worker writes
``{"content_type", "path", "limits", "memory", "cpu", "wall"}`` to the zygote's stdin and reads
``{"blocks": [...]}`` or ``{"error": {"code", "message", "detail"}}`` from its stdout (``detail``,
when there is one, is for the worker's log, never for users).
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
from dataclasses import asdict
from typing import Any


def _limit(memory: int, cpu: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _parse_in_child(request: dict[str, Any], write_fd: int) -> None:
    """In the forked grandchild: limits, parse, one JSON document down the pipe, exit."""
    from pathlib import Path

    from knowledge.parsers import Limits, ParseError, parse

    code = 0
    try:
        _limit(request["memory"], request["cpu"])
        data = Path(request["path"]).read_bytes()
        try:
            blocks = parse(request["content_type"], data, Limits(**request["limits"]))
            payload: dict[str, Any] = {"blocks": [asdict(b) for b in blocks]}
        except ParseError as exc:
            payload = {"error": {"code": exc.code, "message": exc.message, "detail": exc.detail}}
        except MemoryError:
            payload = {
                "error": {
                    "code": "parse_memory",
                    "message": "Parsing needed more memory than allowed.",
                }
            }
        except RecursionError:
            payload = {
                "error": {
                    "code": "too_deeply_nested",
                    "message": "The document is nested too deeply.",
                }
            }
        encoded = json.dumps(payload).encode()
        view = memoryview(encoded)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
    except MemoryError:
        code = 3
    except BaseException:
        code = 4
    finally:
        os._exit(code)


def _run_one(request: dict[str, Any]) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # grandchild
        os.close(read_fd)
        _parse_in_child(request, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + request["wall"]
    chunks = []
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], remaining)
        if not ready:
            continue
        piece = os.read(read_fd, 1 << 20)
        if not piece:
            break
        chunks.append(piece)
    os.close(read_fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {
            "error": {
                "code": "parse_timeout",
                "message": f"Parsing took longer than {request['wall']:.0f} s.",
            }
        }
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return {
                "error": {
                    "code": "parse_timeout",
                    "message": "Parsing used more CPU time than allowed.",
                }
            }
        return {"error": {"code": "parser_crash", "message": f"The parser crashed (signal {sig})."}}
    if os.WEXITSTATUS(status) == 3:
        return {
            "error": {"code": "parse_memory", "message": "Parsing needed more memory than allowed."}
        }
    try:
        result: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError:
        return {"error": {"code": "parser_crash", "message": "The parser failed without a result."}}
    return result


def _serve() -> int:
    # Warm up: what the grandchildren will need, imported once.
    import charset_normalizer  # noqa: F401
    import docx  # noqa: F401
    import lxml.html  # noqa: F401
    import pdfplumber  # noqa: F401

    import knowledge.parsers.docx
    import knowledge.parsers.html
    import knowledge.parsers.json_records
    import knowledge.parsers.markdown
    import knowledge.parsers.pdf
    import knowledge.parsers.text  # noqa: F401

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            result = _run_one(json.loads(line))
        except Exception as exc:  # the zygote must outlive any one request
            result = {
                "error": {
                    "code": "parser_crash",
                    "message": "The parser failed.",
                    "detail": f"zygote: {type(exc).__name__}",
                }
            }
        out.write(json.dumps(result).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())

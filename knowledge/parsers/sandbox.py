"""Parse untrusted bytes in a child process with limits on memory, CPU time and wall time.

The worker calls :func:`parse_isolated`; it starts ``python -m knowledge.parsers.sandbox`` with
``RLIMIT_AS`` / ``RLIMIT_CPU`` / ``RLIMIT_FSIZE`` set, passes the file path, and reads JSON
blocks from stdout. A bomb that exhausts memory, a parser stuck in a loop or a crash kills only
the child and ends as a specific error code; the worker keeps serving.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
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


def parse_isolated(
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
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
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
        payload = json.loads(out)
        if "error" in payload:
            raise ParseError(payload["error"]["code"], payload["error"]["message"])
        blocks = [Block(**block) for block in payload["blocks"]]
        for block in blocks:  # the child cleaned them; the parent trusts no child
            block.text = clean_text(block.text)
            block.heading_path = [clean_text(h) for h in block.heading_path]
        return blocks
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
        payload: dict[str, object] = {"error": {"code": exc.code, "message": exc.message}}
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

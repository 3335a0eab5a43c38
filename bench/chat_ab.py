"""Chat turns served by several checkouts of this repository, interleaved: an A/B that the
machine's drift cannot bias.

    git worktree add /tmp/before <commit>
    ln -s "$PWD/.venv" "$PWD/.data" /tmp/before/   # this checkout's virtualenv and database
    make bench-ab AB="/tmp/before ."                # python -m bench.chat_ab /tmp/before .

One daphne process per checkout (started in it, its code first on ``sys.path``), all against the same
``bench.chat`` database and test provider; ``BENCH_AB_ROUNDS`` rounds (default 4), each sending
``BENCH_AB_REQUESTS`` JSON turns (default 300; streamed ones with ``BENCH_AB_STREAM=1``) from
``BENCH_AB_CLIENTS`` keep-alive clients (default 16) to every server in turn, the order
reversed every other round. Per checkout: server CPU per turn (from ``/proc``), turns/s, p50
and p95, each the median over the rounds.

On this 2-core machine the same code measured 25 to 37 ms of CPU per turn in back-to-back
sequential runs (docs/BENCHMARKS.md); one checkout's interleaved rounds spread by about ±15%,
so compare medians, and more rounds for small differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench import destroy_database
from bench.chat import BIN, ROOT, build_bench, cpu_seconds, load, wait_http

ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "4"))
REQUESTS = int(os.environ.get("BENCH_AB_REQUESTS", "300"))
CLIENTS = int(os.environ.get("BENCH_AB_CLIENTS", "16"))
STREAM = os.environ.get("BENCH_AB_STREAM", "") == "1"  # streamed turns instead of JSON ones


def main(checkouts: list[str]) -> int:
    from tests.processes import free_port, running

    roots = [Path(c).resolve() for c in checkouts]
    if not roots:
        print(__doc__)
        return 2
    bench = build_bench()
    logs = ROOT / ".data" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    provider = [sys.executable, "-m", "tests.fake_openai", str(bench.llm_port), "20"]
    results: dict[Path, list[tuple[float, float, float, float]]] = {root: [] for root in roots}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(running(provider, bench.base_env, logs / "llm-ab.log"))
            servers: list[tuple[Path, int, subprocess.Popen[bytes]]] = []
            for i, root in enumerate(roots):
                port = free_port()
                argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                        "--access-log", "/dev/null", "chatbot_site.asgi:application"]  # fmt: skip
                # Its code: daphne puts its working directory first on sys.path.
                env = dict(bench.base_env, PYTHONPATH=str(root))
                log = logs / f"daphne-ab-{i}.log"
                proc = stack.enter_context(running(argv, env, log, cwd=root))
                servers.append((root, port, proc))
            for _root, port, _proc in servers:
                wait_http(port)
                asyncio.run(load(port, bench.secret, bench.bot_id, clients=CLIENTS, total=60,
                                 stream=STREAM))  # fmt: skip
            for n in range(ROUNDS):
                for root, port, proc in servers if n % 2 == 0 else servers[::-1]:
                    before = cpu_seconds(proc.pid)
                    r = asyncio.run(load(port, bench.secret, bench.bot_id, clients=CLIENTS,
                                         total=REQUESTS, stream=STREAM))  # fmt: skip
                    cpu_ms = (cpu_seconds(proc.pid) - before) / REQUESTS * 1000
                    results[root].append((cpu_ms, r["rps"], r["p50"], r["p95"]))
    finally:
        destroy_database(bench.old_name)
    kind = "streamed" if STREAM else "JSON"
    print(f"\n{CLIENTS} clients, {REQUESTS} {kind} turns per round, {ROUNDS} rounds, daphne\n")
    print("| checkout | CPU ms per turn (rounds) | median | turns/s | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for root in roots:
        rows = results[root]
        med = [statistics.median(row[i] for row in rows) for i in range(4)]
        rounds = ", ".join(f"{row[0]:.2f}" for row in rows)
        print(f"| {root} | {rounds} | {med[0]:.2f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

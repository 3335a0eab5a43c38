"""Chat turns served by several checkouts of this repository, interleaved: an A/B that the
machine's drift cannot bias.

    git worktree add /tmp/before <commit>
    ln -s "$PWD/.venv" "$PWD/.data" /tmp/before/   # this checkout's virtualenv and database
    make bench-ab AB="/tmp/before ."                # python -m bench.chat_ab /tmp/before .

One daphne process per checkout (started in it, its code first on ``sys.path``), all against the same
``bench.chat`` database and test provider; ``BENCH_AB_ROUNDS`` rounds (default 4), each sending
``BENCH_AB_REQUESTS`` JSON turns (default 300; streamed ones with ``BENCH_AB_STREAM=1``) from
``BENCH_AB_CLIENTS`` keep-alive clients (default 16) to every server in turn, the order
reversed every other round. Per checkout: server CPU per turn (from ``/proc``, the server's
processes together), turns/s, p50 and p95, each the median over the rounds.

A checkout written ``PATH@N`` is served as `make run` and the container serve it,
``python -m chatbot_site.serve`` with ``API_PROCESSES=N`` (N daphne processes on one port;
the checkout must have ``chatbot_site/serve.py``): ``make bench-ab AB=".@1 .@2"`` compares one
process with two. Every round also measures the floor (``bench.chat.floor``: the retrieval SQL
and the LLM call alone, from as many threads as clients), and each row gives its p95 over the
floor's and as a ratio to it, medians over the rounds.

On this 2-core machine the same code measured 25 to 37 ms of CPU per turn in back-to-back
sequential runs (docs/BENCHMARKS.md); one checkout's interleaved rounds spread by about ±15%,
so compare medians, and more rounds for small differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench import destroy_database
from bench.chat import BIN, ROOT, build_bench, floor, load, tree_cpu_seconds, wait_http

ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "4"))
REQUESTS = int(os.environ.get("BENCH_AB_REQUESTS", "300"))
CLIENTS = int(os.environ.get("BENCH_AB_CLIENTS", "16"))
STREAM = os.environ.get("BENCH_AB_STREAM", "") == "1"  # streamed turns instead of JSON ones


def daphne_on(fd: int, app: str) -> list[str]:
    return [str(BIN / "daphne"), "--fd", str(fd), "--access-log", "/dev/null", app]


def main(checkouts: list[str]) -> int:
    from tests.processes import free_port, running, serving_on_a_socket

    if not checkouts:
        print(__doc__)
        return 2
    entries: list[tuple[str, Path, int | None]] = []  # processes: None for a bare daphne
    for given in checkouts:
        path, _, count = given.partition("@")
        entries.append((given, Path(path).resolve(), int(count) if count else None))
    bench = build_bench()
    logs = ROOT / ".data" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    provider = bench.provider_argv("20")
    results: dict[str, list[tuple[float, ...]]] = {label: [] for label, _, _ in entries}
    floors: list[float] = []
    llm_url = f"http://127.0.0.1:{bench.llm_port}/v1"
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(running(provider, bench.base_env, logs / "llm-ab.log",
                                        pass_fds=[bench.llm_socket.fileno()]))  # fmt: skip
            servers: list[tuple[str, int, subprocess.Popen[bytes]]] = []
            for i, (label, root, processes) in enumerate(entries):
                # Its code: daphne puts its working directory first on sys.path.
                env = dict(bench.base_env, PYTHONPATH=str(root))
                log = logs / f"daphne-ab-{i}.log"
                if processes is None:  # daphne is handed its listening socket
                    argv_of = functools.partial(daphne_on, app="chatbot_site.asgi:application")
                    port, proc = stack.enter_context(
                        serving_on_a_socket(argv_of, env, log, cwd=root)
                    )
                else:
                    # The launcher binds a port by number: a checkout older than its -p 0
                    # (which reports the port it chose) could not say which. The one racy
                    # pick left: a port taken meanwhile fails this run at wait_http.
                    port = free_port()
                    argv = [str(BIN / "python"), "-m", "chatbot_site.serve", "-b", "127.0.0.1",
                            "-p", str(port), "--access-log", "/dev/null",
                            "chatbot_site.asgi:application"]  # fmt: skip
                    env["API_PROCESSES"] = str(processes)
                    proc = stack.enter_context(running(argv, env, log, cwd=root))
                servers.append((label, port, proc))
            for _label, port, _proc in servers:
                wait_http(port)
                # Enough turns that every process of a server has loaded its model.
                asyncio.run(load(port, bench.secret, bench.bot_id, clients=CLIENTS, total=60,
                                 stream=STREAM))  # fmt: skip
            for n in range(ROUNDS):
                floors.append(
                    floor(bench.space, bench.query_vectors, llm_url, threads=CLIENTS)["p95"]
                )
                for label, port, proc in servers if n % 2 == 0 else servers[::-1]:
                    before = tree_cpu_seconds(proc.pid)
                    r = asyncio.run(load(port, bench.secret, bench.bot_id, clients=CLIENTS,
                                         total=REQUESTS, stream=STREAM))  # fmt: skip
                    cpu_ms = (tree_cpu_seconds(proc.pid) - before) / REQUESTS * 1000
                    over = r["p95"] - floors[-1]
                    ratio = r["p95"] / floors[-1]
                    results[label].append((cpu_ms, r["rps"], r["p50"], r["p95"], over, ratio))
    finally:
        destroy_database(bench.old_name)
    kind = "streamed" if STREAM else "JSON"
    print(f"\n{CLIENTS} clients, {REQUESTS} {kind} turns per round, {ROUNDS} rounds")
    print(f"floor p95 ms (rounds): {', '.join(f'{f:.1f}' for f in floors)}; "
          f"median {statistics.median(floors):.1f}\n")  # fmt: skip
    print("| checkout | CPU ms per turn (rounds) | median | turns/s | p50 ms | p95 ms "
          "| p95 over floor ms | p95 / floor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, _root, _processes in entries:
        rows = results[label]
        med = [statistics.median(row[i] for row in rows) for i in range(6)]
        rounds = ", ".join(f"{row[0]:.2f}" for row in rows)
        print(f"| {label} | {rounds} | {med[0]:.2f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} "
              f"| +{med[4]:.1f} | {med[5]:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

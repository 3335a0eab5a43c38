"""CPU of the ``openai`` backend's provider call, in process, under each ``LLM_HTTP_CLIENT``.

``OpenAILLM.stream`` against the loopback test provider (a process of its own), the HTTP clients
taking turns round by round: CPU per call (a one-word answer), and per piece of a 2,001-word
answer sent as fast as the provider can (a burst) and one word every 0.5 ms, read paced as a
stream's relay reads it (``LLM_STREAM_BATCH_SECONDS``). Per piece = (long answer - one word)
/ 2,000. ``BENCH_LLM_ROUNDS`` rounds (default 3); medians.

    DJANGO_SETTINGS_MODULE=chatbot_site.settings.test .venv/bin/python -m bench.llm_client
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

from bench import setup_django

CLIENTS = tuple(os.environ.get("BENCH_LLM_CLIENTS", "httpx,aiohttp").split(","))
ROUNDS = int(os.environ.get("BENCH_LLM_ROUNDS", "3"))
# (label, words, the provider's delay between words, calls)
CASES = (("one", 1, 0.0, 200), ("burst", 2001, 0.0, 10), ("paced", 2001, 0.0005, 5))


def cpu_per_call(words: int, delay: float, calls: int) -> dict[str, float]:
    """Each HTTP client's CPU seconds per call, against one provider process."""
    from django.conf import settings

    from conversations.llm import LLMRequest
    from conversations.llm.openai import OpenAILLM
    from tests.processes import ROOT, listening_socket, running

    # The provider is handed its listening socket: a port picked free could be taken before
    # it bound it.
    sock = listening_socket()
    port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "tests.fake_openai", f"fd:{sock.fileno()}", str(words),
            str(delay)]  # fmt: skip
    log = ROOT / ".data" / "bench-logs" / "llm-client.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    request = LLMRequest(model="m", messages=[{"role": "user", "content": "hi"}], question="hi")
    pace = settings.LLM_STREAM_BATCH_SECONDS if delay else 0.0
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = f"http://127.0.0.1:{port}/v1", "sk-bench"
    results = {}
    with sock, running(argv, dict(os.environ), log, pass_fds=[sock.fileno()]):
        for client in CLIENTS:
            settings.LLM_HTTP_CLIENT = client
            llm = OpenAILLM()

            async def calls_of(n: int, llm: OpenAILLM = llm) -> None:
                for _ in range(n):
                    async for _piece in llm.stream(request, pace=pace):
                        pass

            async def measured() -> float:
                for _ in range(50):  # the provider is up, and a connection is pooled
                    try:
                        await calls_of(1)
                        break
                    except Exception:  # the provider is not listening yet
                        await asyncio.sleep(0.1)
                started = time.process_time()
                await calls_of(calls)
                return (time.process_time() - started) / calls

            results[client] = asyncio.run(measured())
    return results


def main() -> int:
    setup_django()
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for label, words, delay, calls in CASES:
            for client, seconds in cpu_per_call(words, delay, calls).items():
                samples.setdefault((label, client), []).append(seconds)
    median = {key: statistics.median(values) for key, values in samples.items()}
    print(f"\n`OpenAILLM.stream` in process, CPU, medians of {ROUNDS} rounds\n")
    print("| HTTP client | per call (one word) | per piece, burst | per piece, paced |")
    print("|---|---|---|---|")
    for client in CLIENTS:
        one = median[("one", client)]
        burst, paced = ((median[(label, client)] - one) / 2000 for label in ("burst", "paced"))
        print(f"| {client} | {one * 1e3:.2f} ms | {burst * 1e6:.1f} µs | {paced * 1e6:.1f} µs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

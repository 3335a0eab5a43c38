"""CPU per trickled token of a stream's own pipeline, in process, without the server around it.

``OpenAILLM.stream`` (paced as a stream's relay reads it, ``LLM_STREAM_BATCH_SECONDS``) against
the loopback test provider sending a word every 20 ms, each piece through the output guard, the
citation filter and the SSE encoding: 32 streams at once, as ``bench.chat``'s trickle row. Per
token = (CPU per stream of a 201-word answer - of a 51-word one) / 150, this process's CPU
(``time.process_time``; the provider is a process of its own). Django's response and daphne are
not in it, and neither are their share of the machine's noise: run it in two checkouts in turn.

    DJANGO_SETTINGS_MODULE=chatbot_site.settings.test .venv/bin/python -m bench.trickle_pipeline
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from bench import setup_django

STREAMS = 32
GAP = 0.02
WORDS = (51, 201)
ROUNDS = 2


def cpu_per_stream(words: int) -> tuple[float, int, int]:
    """CPU seconds per stream of a ``words``-word answer, and the tokens and guard calls."""
    from django.conf import settings

    from conversations.chat_api import sse
    from conversations.guardrails import OutputGuard, new_canary
    from conversations.llm import Delta, LLMRequest
    from conversations.llm.openai import OpenAILLM
    from conversations.prompting import CitationFilter
    from tests.processes import ROOT, listening_socket, running

    # The provider is handed its listening socket: a port picked free could be taken before
    # it bound it.
    sock = listening_socket()
    port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "tests.fake_openai", f"fd:{sock.fileno()}", str(words),
            str(GAP)]  # fmt: skip
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = f"http://127.0.0.1:{port}/v1", "sk-bench"
    request = LLMRequest(model="m", messages=[{"role": "user", "content": "hi"}], question="hi")
    counts = [0, 0]  # guard calls, tokens (the test provider's words)
    log = ROOT / ".data" / "bench-logs" / "trickle-pipeline.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with sock, running(argv, dict(os.environ), log, pass_fds=[sock.fileno()]):
        llm = OpenAILLM()

        async def stream() -> None:
            guard = OutputGuard(canary=new_canary())
            cited = CitationFilter(3)
            events = 0
            async for item in llm.stream(request, pace=settings.LLM_STREAM_BATCH_SECONDS):
                if isinstance(item, Delta):
                    counts[0] += 1
                    counts[1] += item.text.count(" ") or 1
                    if piece := cited.feed(guard.feed(item.text)):
                        events += 1
                        sse(events, "delta", {"content": piece})

        async def measured() -> float:
            for _ in range(100):  # until the provider listens
                try:
                    await stream()
                    break
                except Exception:  # the provider is not listening yet
                    await asyncio.sleep(0.1)
            await asyncio.gather(*(stream() for _ in range(STREAMS)))  # warm
            counts[:] = [0, 0]
            started = time.process_time()
            for _ in range(ROUNDS):
                await asyncio.gather(*(stream() for _ in range(STREAMS)))
            return (time.process_time() - started) / (ROUNDS * STREAMS)

        return asyncio.run(measured()), counts[1], counts[0]


def main() -> None:
    setup_django()
    (short, _, _), (long, tokens, calls) = (cpu_per_stream(words) for words in WORDS)
    per_token = (long - short) / (WORDS[1] - WORDS[0])
    print(f"{per_token * 1e6:.1f} µs per token ({tokens / calls:.2f} tokens per guard call)")


if __name__ == "__main__":
    main()

"""CPU per trickled token of a stream's own pipeline, in process, without the server around it.

``OpenAILLM.stream`` (paced as a stream's relay reads it, ``LLM_STREAM_BATCH_SECONDS``) against
the loopback test provider sending a word every 20 ms, each piece through the output guard, the
citation filter and the SSE encoding: 32 streams at once, as ``bench.chat``'s trickle row. Per
token = (CPU per stream of a 201-word answer - of a 51-word one) / 150, this process's CPU
(``time.process_time``; the provider is a process of its own). Django's response and daphne are
not in it, and neither are their share of the machine's noise: run it in two checkouts in turn.

The floor, measured in the same process in turn with it (round by round): bare asyncio streams
asking the same provider for the same answer and reading its chunked body a chunk at a time (as
``bench.relay_floor`` does, without the write): no HTTP client, no JSON, no guard. A token of
ours is stated as a ratio to it.

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
# BENCH_TRICKLE_READ_ONLY=1: the provider's read alone (no guard, citation filter or SSE).
READ_ONLY = os.environ.get("BENCH_TRICKLE_READ_ONLY") == "1"


ASK = b'{"model": "floor", "stream": true, "messages": [{"role": "user", "content": "floor"}]}'


async def floor_stream(port: int) -> None:
    """The provider's streamed answer read as bare chunks, one read per token."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(ASK), ASK)
        )
        await reader.readuntil(b"\r\n\r\n")  # the status and headers
        while True:
            size_line = await reader.readline()
            await reader.readexactly(int(size_line, 16) + 2)
            if size_line.strip() == b"0":
                return
    finally:
        writer.close()


def cpu_per_stream(words: int) -> tuple[float, float, int, int]:
    """CPU seconds per stream of a ``words``-word answer, ours and the floor's, and our tokens
    and guard calls."""
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
                    if READ_ONLY:  # the provider's read alone
                        continue
                    if piece := cited.feed(guard.feed(item.text)):
                        events += 1
                        sse(events, "delta", {"content": piece})

        async def measured() -> tuple[float, float]:
            for _ in range(100):  # until the provider listens
                try:
                    await stream()
                    break
                except Exception:  # the provider is not listening yet
                    await asyncio.sleep(0.1)
            await asyncio.gather(*(stream() for _ in range(STREAMS)))  # warm
            await asyncio.gather(*(floor_stream(port) for _ in range(STREAMS)))
            counts[:] = [0, 0]
            spent = [0.0, 0.0]  # ours, the floor's
            for _ in range(ROUNDS):
                started = time.process_time()
                await asyncio.gather(*(stream() for _ in range(STREAMS)))
                spent[0] += time.process_time() - started
                started = time.process_time()
                await asyncio.gather(*(floor_stream(port) for _ in range(STREAMS)))
                spent[1] += time.process_time() - started
            return spent[0] / (ROUNDS * STREAMS), spent[1] / (ROUNDS * STREAMS)

        ours, floor = asyncio.run(measured())
        return ours, floor, counts[1], counts[0]


def main() -> None:
    setup_django()
    (short, short_floor, _, _), (long, long_floor, tokens, calls) = (
        cpu_per_stream(words) for words in WORDS
    )
    per_token = (long - short) / (WORDS[1] - WORDS[0])
    floor = (long_floor - short_floor) / (WORDS[1] - WORDS[0])
    print(
        f"{per_token * 1e6:.1f} µs per token ({tokens / calls:.2f} tokens per guard call); "
        f"floor {floor * 1e6:.1f} µs; {per_token / floor:.2f}x the floor"
    )


if __name__ == "__main__":
    main()

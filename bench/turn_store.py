"""CPU of a chat turn's store, as the view runs it: the late store's write-ahead and the turn's
receipt (docs/BENCHMARKS.md, 2026-12-07 late night).

``python -m bench.turn_store [--rounds N]`` (under the test settings, a database of its own:
``bench_turn_store``) times, round after round, alternating, in this process's CPU
(``time.process_time``, the worker thread's included):

  floor    BEGIN, ``SELECT 1``, COMMIT on the same connection: the three round trips any
           store makes, and nothing else
  finish   ``chat_finish`` of a new conversation's JSON turn (its rows, usage and, since the
           receipt, the receipt: one statement)
  store    ``conversations.chat_api.store`` of another such turn on an event loop: the worker
           thread's hop, and (since the write-ahead) its timer

Each turn is opened first (``chat_open``, not timed). It runs on either checkout (``cd`` into
it), so before/after come from two runs of the same script; each figure is also printed as a
ratio to the floor of its own run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import create_database, destroy_database, setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=600)
    rounds = parser.parse_args().rounds
    setup_django()
    old_name = create_database("bench_turn_store")
    try:
        run(rounds)
    finally:
        destroy_database(old_name)


def run(rounds: int) -> None:
    from django.db import connection, transaction

    from conversations import chat, chat_api
    from tests.world import build_tenant

    world = build_tenant("bench")
    loop = asyncio.new_event_loop()

    def turn() -> tuple[chat.Turn, chat.Outcome]:
        opened = chat.chat_open(
            tenant=world.tenant, api_key=world.chat_key, bot_id=world.bot.pk, session_id=None,
            messages=[{"role": "user", "content": "When do plans renew?"}], metadata={},
        )  # fmt: skip
        outcome = chat.Outcome("Plans renew yearly.", [], "stop", prompt_tokens=40,
                               completion_tokens=4)  # fmt: skip
        return opened, outcome

    def floor() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    figures: dict[str, list[float]] = {"floor": [], "finish": [], "store": []}
    for n in range(rounds + 50):  # the first 50: warm-up
        timed = {}
        start = time.process_time()
        floor()
        timed["floor"] = time.process_time() - start
        opened, outcome = turn()
        start = time.process_time()
        chat.chat_finish(opened, outcome)
        timed["finish"] = time.process_time() - start
        opened, outcome = turn()
        start = time.process_time()
        loop.run_until_complete(chat_api.store(opened, outcome))
        timed["store"] = time.process_time() - start
        if n >= 50:
            for name, seconds in timed.items():
                figures[name].append(seconds * 1000)
    base = statistics.median(figures["floor"])
    print(f"{'':8} {'median ms':>10} {'min ms':>8} {'x floor':>8}")
    for name, times in figures.items():
        median = statistics.median(times)
        print(f"{name:8} {median:10.3f} {min(times):8.3f} {median / base:8.2f}")


if __name__ == "__main__":
    main()

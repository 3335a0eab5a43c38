"""CPU of a continued chat turn's history at a long session: what reads the stored messages and
decides which answers the prompt leaves out (docs/BENCHMARKS.md, 2026-12-07 evening).

``python -m bench.history_verdicts [--rounds N]`` (under the test settings, a database of its
own: ``bench_history``) stores one conversation of 100 messages (50 questions, 50 answers of
about 700 characters, so that ``CHAT_HISTORY_TOKENS`` carries the newest dozen), then times,
round after round, in this process's CPU (``time.process_time``):

  floor   ``chat_open`` of a turn continuing it (the key's bot, the session's 100 messages
          read, its claim) and its history trimmed to the budget (``Turn.prompt_history``,
          each message's tokens counted): what every continued turn pays, whatever is decided
  turn    the same and ``_drop_injected_answers``: the answers the prompt carries, decided
          from their stored verdicts (``Message.injection_flagged``); on a checkout before it,
          decided by the document rules once per process (an ``lru_cache``): ``cold`` is the
          cache cleared before each turn (each process of a deployment, after each restart),
          ``warm`` it kept
  store   the verdict decided when an answer is stored (``answer_flagged``, in ``chat_finish``)

It runs on either checkout (``cd`` into it), so before/after come from two runs of the same
script; each figure is also printed as a ratio to the floor of its own run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from bench import create_database, destroy_database, setup_django

ANSWER = (
    "Annual plans renew on the date you first subscribed, and the invoice is sent to the "
    "billing address a week before. You can switch plans from the billing page at any time; "
    "the change applies from the next cycle, and unused months are refunded pro rata [1]. "
    "Refunds reach the original payment method within five business days [2]. "
)  # about 330 characters: twice that per answer


def cpu(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and minimum CPU milliseconds of ``fn`` over ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    setup_django()
    old_name = create_database("bench_history")
    try:
        run(rounds)
    finally:
        destroy_database(old_name)


def run(rounds: int) -> None:
    from conversations import chat
    from conversations.models import Conversation, Message
    from tests.world import build_tenant

    world = build_tenant("bench")
    conversation = Conversation.all_tenants.create(
        tenant=world.tenant, bot=world.bot, api_key=world.chat_key, title="bench"
    )
    verdicts = hasattr(chat, "answer_flagged")  # stored as chat_finish stores them
    rows = []
    for n in range(50):
        rows.append(Message(tenant=world.tenant, conversation=conversation, role="user",
                            content=f"Question {n}: when do annual plans renew?"))  # fmt: skip
        answer = f"{n}. {ANSWER * 2}"
        extra = {"injection_flagged": chat.answer_flagged(answer)} if verdicts else {}
        rows.append(Message(tenant=world.tenant, conversation=conversation, role="assistant",
                            content=answer, **extra))  # fmt: skip
    Message.all_tenants.bulk_create(rows)
    messages = [{"role": "user", "content": "And how do refunds work?"}]

    def open_turn() -> chat.Turn:
        turn = chat.chat_open(tenant=world.tenant, api_key=world.chat_key, bot_id=world.bot.pk,
                              session_id=conversation.pk, messages=messages, metadata={})  # fmt: skip
        chat.chat_release(turn)
        return turn

    def turn() -> None:
        chat._drop_injected_answers(open_turn())

    cache = getattr(chat, "_answer_flagged", None)

    def cold_turn() -> None:
        cache.cache_clear()  # type: ignore[union-attr]
        turn()

    carried = open_turn().prompt_history()
    answers = sum(m["role"] == "assistant" for m in carried)
    print(f"history carried: {len(carried)} messages, {answers} answers, "
          f"{sum(len(m['content']) for m in carried)} characters")  # fmt: skip
    for _ in range(20):  # warm-up: connections, compiled queries, the embedder's tokenizer
        turn()
    floor = cpu(lambda: open_turn().prompt_history(), rounds)
    figures = {"floor (open, history trimmed)": floor}
    if cache is not None:
        figures["turn, cold cache (before)"] = cpu(cold_turn, rounds)
        figures["turn, warm cache (before)"] = cpu(turn, rounds)
        figures["store: no verdict (before)"] = (0.0, 0.0)
    else:
        figures["turn, stored verdicts"] = cpu(turn, rounds)
        text = f"{uuid.uuid4()} {ANSWER * 2}"
        figures["store: answer_flagged"] = cpu(lambda: chat.answer_flagged(text), rounds)
    print(f"{'':32} {'median ms':>10} {'min ms':>8} {'x floor':>8}")
    for name, (median, least) in figures.items():
        print(f"{name:32} {median:10.2f} {least:8.2f} {median / floor[0]:8.2f}")


if __name__ == "__main__":
    main()

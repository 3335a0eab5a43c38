"""Answers streamed while the database did not answer, stored once it answers again.

A stream's answer comes from the provider, not the database: a database that stops answering
in the middle of a stream (frozen, restarting) does not stop it, but the turn cannot be stored
at its end (:func:`conversations.chat.chat_finish`), and the answer the client had read was
lost — no message in the conversation, its tokens never counted. Such a turn is kept here, in
the process that streamed it, and stored by one thread of its own as soon as the database
answers (one attempt every ``RETRY_SECONDS``, none while the process knows it is down:
:class:`chatbot_site.pgconnection.Outage`), with the finish reason the stream had. The client's
``error`` event says so.

What it cannot do: a process that stops before the database is back loses the turns it held
(they are in its memory only, never written anywhere else: chat content stays out of Redis and
the logs), and it holds at most ``MAX_TURNS`` of them for at most ``KEEP_SECONDS``; past either
a turn is dropped with a ``chat_store_abandoned`` line, and so is each turn still held when the
process exits (``reason=shutdown``: a deploy or restart during the outage), with its ids. The turn's claim on its conversation and
its hold on the quota end when the first attempt fails, as before.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from dataclasses import dataclass

import structlog
from django.db import OperationalError, close_old_connections

from chatbot_site.pgconnection import outage
from conversations.chat import Outcome, Turn, chat_finish

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
KEEP_SECONDS = 3600.0
MAX_TURNS = 1000


@dataclass
class _Late:
    turn: Turn
    outcome: Outcome
    since: float


class LateStores:
    """The process's turns waiting for the database, oldest first, and the thread that stores
    them (started with the first)."""

    def __init__(self) -> None:
        self._turns: deque[_Late] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, turn: Turn, outcome: Outcome) -> bool:
        """Keep the turn until it can be stored; False when no more can be kept (logged)."""
        with self._lock:
            if len(self._turns) >= MAX_TURNS:
                full = True
            else:
                full = False
                self._turns.append(_Late(turn, outcome, time.monotonic()))
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="chat-late-store", daemon=True
                    )
                    self._thread.start()
        if full:
            self._abandon(turn, "full")
            return False
        log.warning(
            "chat_store_deferred",
            conversation_id=str(turn.conversation.pk),
            message_id=str(turn.message_id),
            finish_reason=outcome.finish_reason,
        )
        return True

    def _run(self) -> None:
        while True:
            time.sleep(RETRY_SECONDS)
            with self._lock:
                if not self._turns:
                    self._thread = None
                    return
                oldest = self._turns[0]
            if time.monotonic() - oldest.since > KEEP_SECONDS:
                self._drop(oldest, "expired")
                continue
            if outage.refusing():  # known down, and not yet time to ask: nothing to try
                continue
            while self._store(oldest):  # the database answers: all of them, oldest first
                with self._lock:
                    self._turns.popleft()
                    if not self._turns:
                        break
                    oldest = self._turns[0]

    def _store(self, late: _Late) -> bool:
        """One attempt; True when the turn is done with (stored, or failed for good)."""
        close_old_connections()
        try:
            chat_finish(late.turn, late.outcome)
        except OperationalError:  # still not answering: the next attempt comes later
            return False
        except Exception:
            log.exception("chat_store_abandoned", message_id=str(late.turn.message_id))
            return True
        finally:
            close_old_connections()
        log.info(
            "chat_stored_late",
            conversation_id=str(late.turn.conversation.pk),
            message_id=str(late.turn.message_id),
            seconds=round(time.monotonic() - late.since, 1),
        )
        return True

    def _drop(self, late: _Late, reason: str) -> None:
        with self._lock:
            if self._turns and self._turns[0] is late:
                self._turns.popleft()
        self._abandon(late.turn, reason)

    def lose_all(self) -> None:
        """At exit: the turns still held go with the process. Each is logged with its ids, so
        that an operator knows which conversations miss their last answer; a process stopped
        during an outage (a deploy, a restart) lost them without a word."""
        with self._lock:
            lost, self._turns = list(self._turns), deque()
        for late in lost:
            self._abandon(late.turn, "shutdown")

    @staticmethod
    def _abandon(turn: Turn, reason: str) -> None:
        log.error(
            "chat_store_abandoned",
            reason=reason,
            tenant_id=str(turn.tenant.pk),
            bot_id=str(turn.bot.pk),
            conversation_id=str(turn.conversation.pk),
            message_id=str(turn.message_id),
        )


late_stores = LateStores()
# Before logging's own handler at exit (they run last registered first): the lines get out.
atexit.register(late_stores.lose_all)

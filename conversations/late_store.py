"""Answers streamed while the database did not answer, stored once it answers again.

A stream's answer comes from the provider, not the database: a database that stops answering
in the middle of a stream (frozen, restarting) does not stop it, but the turn cannot be stored
at its end (:func:`conversations.chat.chat_finish`), and the answer the client had read was
lost — no message in the conversation, its tokens never counted. Such a turn is kept here, in
the process that streamed it, and stored by one thread of its own as soon as the database
answers (one attempt every ``RETRY_SECONDS``, none while the process knows it is down:
:class:`chatbot_site.pgconnection.Outage`), with the finish reason the stream had. The client's
``error`` event says so.

A process that exits while it holds turns (a deploy or restart during the outage: ``SIGTERM``)
tries them once more on its way out (:meth:`LateStores.stop`): for at most
``CHAT_LATE_STORE_EXIT_SECONDS``, as often as the database lets it (it may be back by then), by
the same thread, so that no turn is stored twice. Those it could not store are lost (they are in
its memory only, never written anywhere else: chat content stays out of Redis and the logs),
each with a ``chat_store_abandoned`` line (``reason=shutdown``) with its ids. It holds at most
``MAX_TURNS`` turns for at most ``KEEP_SECONDS``; past either a turn is dropped with a
``chat_store_abandoned`` line too. The turn's claim on its conversation and its hold on the
quota end when the first attempt fails, as before.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import OperationalError, close_old_connections

from chatbot_site.pgconnection import outage
from conversations.chat import Outcome, Turn, chat_finish

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
# At exit, how often an attempt is made (the database may have answered since: :class:`Outage`
# lets one through a second while it is known down).
EXIT_RETRY_SECONDS = 0.1
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
        # Set at exit (:meth:`stop`): the thread tries at once, and again every
        # EXIT_RETRY_SECONDS, until the turns are stored or ``_exit_by`` has passed.
        self._stopping = threading.Event()
        self._exit_by = 0.0

    def add(self, turn: Turn, outcome: Outcome) -> bool:
        """Keep the turn until it can be stored; False when no more can be kept (logged)."""
        with self._lock:
            # Past the exit's time (a turn ended while the process stops): no one would try it.
            closed = self._stopping.is_set() and time.monotonic() >= self._exit_by
            if closed or len(self._turns) >= MAX_TURNS:
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
            self._abandon(turn, "shutdown" if closed else "full")
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
            if self._stopping.is_set():
                time.sleep(EXIT_RETRY_SECONDS)
            else:
                self._stopping.wait(RETRY_SECONDS)  # stop() wakes it: an attempt at once
            with self._lock:
                past = self._stopping.is_set() and time.monotonic() >= self._exit_by
                if not self._turns or past:
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
                    if self._turns and self._turns[0] is oldest:  # (stop() may have given up)
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

    def stop(self, seconds: float | None = None) -> None:
        """At exit: the turns still held are tried once more, for at most ``seconds``
        (``CHAT_LATE_STORE_EXIT_SECONDS``), by the thread that tries them (one attempt at a
        time: a turn is never stored twice), at once and then as often as the database lets it;
        those still held then go with the process, each logged with its ids, so that an
        operator knows which conversations miss their last answer. A process stopped during an
        outage (a deploy, a restart) lost them all, even with the database back by then; before
        that, without a word. With nothing held it returns at once."""
        with self._lock:
            held = len(self._turns)
            if seconds is None:
                seconds = float(settings.CHAT_LATE_STORE_EXIT_SECONDS) if held else 0.0
            # From now on a turn added once this has passed is lost at once (add).
            self._exit_by = time.monotonic() + seconds
            self._stopping.set()
            idle = self._thread is None or not self._thread.is_alive()
            if held and seconds and idle:
                self._thread = threading.Thread(
                    target=self._run, name="chat-late-store", daemon=True
                )
                self._thread.start()
            thread = self._thread
        if held and seconds and thread is not None:
            log.warning("chat_store_retried_at_exit", turns=held, seconds=seconds)
            # Its attempt under way may wait for a frozen database past the bound: not longer.
            thread.join(max(0.0, self._exit_by - time.monotonic()))
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
atexit.register(late_stores.stop)

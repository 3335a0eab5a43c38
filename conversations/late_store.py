"""Answers streamed while the database did not answer, stored once it answers again.

A stream's answer comes from the provider, not the database: a database that stops answering
in the middle of a stream (frozen, restarting) does not stop it, but the turn cannot be stored
at its end (:func:`conversations.chat.chat_finish`), and the answer the client had read was
lost — no message in the conversation, its tokens never counted. Such a turn is kept
(:func:`late_turn`: what the database would hold, no more) and stored by one thread of the
process that streamed it as soon as the database answers (one attempt every
``RETRY_SECONDS``, none while the process knows it is down:
:class:`chatbot_site.pgconnection.Outage`), with the finish reason the stream had. The
client's ``error`` event says so.

Before it is held in memory it is written to the spool in Redis (:mod:`conversations.late_spool`),
so that it outlives the process: one killed (``SIGKILL``, a crash, the OOM killer) leaves it
there, its lease lapses (``CHAT_LATE_STORE_LEASE_SECONDS``), and the drain
(:func:`late_turns_drain`: Celery beat's ``conversations.drain_late_turns`` and each API
process at its start) stores it. A first attempt still under way after
``CHAT_LATE_STORE_WRITE_AHEAD_SECONDS`` (a frozen database holds it for its statement bound)
spools the turn meanwhile (:meth:`LateStores.write_ahead`), so a process killed during it
loses nothing either; a healthy store, done before, costs no Redis round trip. A turn the
spool refused (Redis down) is offered to it again every second while it is held, and once
more at exit. Whoever stores it removes it from the spool after the COMMIT, and the store is
idempotent on the answer's id (:func:`late_turn_store`, :class:`TurnReceipt`): a turn whose
COMMIT went through unheard (a frozen database, a process gone between the COMMIT and the
removal) is found stored and written no second time — its usage is not counted twice, also
when its conversation was deleted meanwhile.

A process that exits while it holds turns (a deploy or restart during the outage: ``SIGTERM``)
tries them once more on its way out (:meth:`LateStores.stop`): for at most
``CHAT_LATE_STORE_EXIT_SECONDS``, as often as the database lets it (it may be back by then), by
the same thread; those it could not store it hands over to the drain
(``chat_store_handed_over``, with their ids). Only a turn the spool could not take (Redis down
or the spool full, still at exit) is lost with its process, with a ``chat_store_abandoned`` line
(``reason=shutdown``) with its ids. A process holds at most ``MAX_TURNS`` turns (past it, a
turn goes to the spool for the drain) for at most ``KEEP_SECONDS`` (past it: dropped,
``chat_store_abandoned``). The turn's claim on its conversation and its hold on the quota end
when the first attempt fails, as before.
"""

from __future__ import annotations

import atexit
import datetime as dt
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Literal

import structlog
from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, close_old_connections

from chatbot_site.pgconnection import outage
from conversations.chat import Outcome, Turn, Writing, turn_write, turn_writing
from conversations.late_spool import KEEP_SECONDS, LateTurn, spool
from conversations.models import Conversation, Message, MessageRole, TurnReceipt
from tenants.models import Tenant

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
# At exit, how often an attempt is made (the database may have answered since: :class:`Outage`
# lets one through a second while it is known down).
EXIT_RETRY_SECONDS = 0.1
MAX_TURNS = 1000
# How long a stored turn's receipt is kept (conversations.models.TurnReceipt): past the
# longest a turn is kept (KEEP_SECONDS) and a drain after it, no second store can come.
RECEIPT_SECONDS = 2 * KEEP_SECONDS


# The answer's fields a kept turn holds (the rest are its ids).
ANSWER_FIELDS = (
    "content", "citations", "prompt_tokens", "completion_tokens", "embedding_tokens", "model",
    "finish_reason", "refusal_reason", "latency_ms", "injection_flagged",
)  # fmt: skip


def late_turn(turn: Turn, outcome: Outcome) -> LateTurn:
    """The turn whose store failed, as it is to be stored: what its first attempt wrote
    (:func:`conversations.chat.turn_writing`: its answer's message, tokens counted and verdict
    decided, and the conversation and question(s) if they were not stored before). From now on
    those are this record's to store."""
    with turn.persist_lock:
        writing = turn_writing(turn, outcome)
    return _late(turn, writing)


def _late(turn: Turn, writing: Writing) -> LateTurn:
    message, question = writing.answer, writing.question
    conversation = turn.conversation
    created = question and turn.is_new_conversation
    return LateTurn(
        message_id=str(turn.message_id),
        tenant_id=str(turn.tenant.pk),
        bot_id=str(turn.bot.pk),
        api_key_id=str(turn.api_key.pk),
        conversation_id=str(conversation.pk),
        new_conversation=(
            {"title": conversation.title, "metadata": conversation.metadata} if created else None
        ),
        questions=[dict(m) for m in turn.new_messages] if question else [],
        answer={name: getattr(message, name) for name in ANSWER_FIELDS},
        since=time.time(),
    )


# What a late store did: ``stored``; ``already_stored`` (nothing written); or the turn dropped,
# no message written — its bot deleted meanwhile (with its conversations: none is created
# again), its conversation deleted, both with the usage counted (usage outlives a bot), or its
# tenant gone (nothing written at all).
LateStored = Literal[
    "stored", "already_stored", "bot_deleted", "conversation_deleted", "tenant_deleted"
]
DROPPED = ("bot_deleted", "conversation_deleted", "tenant_deleted")


def late_turn_store(late: LateTurn) -> LateStored:
    """Store a kept turn (one transaction, as :func:`conversations.chat.chat_finish` does).
    ``already_stored`` when it was stored already — its answer's receipt (or, stored before
    receipts, its message) is there: an earlier attempt whose COMMIT went through though its
    caller never heard (a frozen database, a process killed before it removed the turn from the
    spool) — and nothing is written: not the answer, the question or the usage again. Also when
    that attempt found its conversation or bot deleted (no message written) or they were deleted
    since: its usage was counted twice, and a deleted new conversation came back. A turn whose
    bot or conversation is gone writes its usage only, and says which (:data:`LateStored`); one
    whose tenant is gone (tenants are deactivated, not deleted, by the service: by hand in the
    database) writes nothing, ``tenant_deleted``: each was a ``chat_store_abandoned`` ERROR
    with a traceback (the foreign keys failed at COMMIT), and the drain's count said
    ``stored`` for a deleted bot's."""
    tenant_id, bot_id = uuid.UUID(late.tenant_id), uuid.UUID(late.bot_id)
    api_key_id = uuid.UUID(late.api_key_id) if late.api_key_id else None
    conversation = Conversation(
        id=uuid.UUID(late.conversation_id), tenant_id=tenant_id, bot_id=bot_id,
        api_key_id=api_key_id, **(late.new_conversation or {}),
    )  # fmt: skip
    answer = Message(
        id=uuid.UUID(late.message_id), tenant_id=tenant_id, conversation=conversation,
        role=MessageRole.ASSISTANT, **late.answer,
    )  # fmt: skip
    usage = {
        "tenant": tenant_id,
        "bot_id": bot_id,
        "api_key_id": api_key_id,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "embedding_tokens": answer.embedding_tokens,
    }
    try:
        return turn_write(
            tenant_id=tenant_id, bot_id=bot_id, conversation=conversation,
            create=late.new_conversation is not None, questions=late.questions, answer=answer,
            usage=usage,
        )  # fmt: skip
    except IntegrityError:
        if TurnReceipt.all_tenants.filter(pk=answer.pk).exists():
            return "already_stored"
        if Message.all_tenants.filter(tenant_id=tenant_id, pk=answer.pk).exists():
            return "already_stored"
        if not Tenant.objects.filter(pk=tenant_id).exists():
            return "tenant_deleted"
        raise


def _dropped(late: LateTurn, reason: str, seconds: float) -> None:
    """The one line of a turn dropped because what it belongs to is gone: no message written,
    nothing created again, out of the spool; its usage counted unless its tenant is gone."""
    log.info("chat_store_dropped", reason=reason, usage_counted=reason != "tenant_deleted",
             seconds=round(seconds, 1), **_ids(late))  # fmt: skip


def _ids(late: LateTurn) -> dict[str, str]:
    return {
        "tenant_id": late.tenant_id,
        "bot_id": late.bot_id,
        "conversation_id": late.conversation_id,
        "message_id": late.message_id,
    }


@dataclass
class _Late:
    turn: LateTurn
    since: float
    spooled: bool


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
        """Keep the turn until it can be stored — in the spool first (Redis), then here; False
        when it can be kept nowhere (logged). One this process cannot hold (past its exit's
        time, or ``MAX_TURNS`` held) is left in the spool to the drain.

        The spool is written before this returns, so that what the client is told next (stored
        later) holds even if the process is killed a moment after: one Redis round trip, on the
        event loop when a stream's store failed — only on that path, but a Redis stalled at the
        same time holds the loop up to ``REDIS_SOCKET_TIMEOUT``. (Written by the thread instead,
        a ``SIGKILL`` right after the client's ``error`` event lost the turn under load.)"""
        late = late_turn(turn, outcome)
        with self._lock:
            # Past the exit's time (a turn ended while the process stops): no one would try it.
            closed = self._stopping.is_set() and time.monotonic() >= self._exit_by
            full = closed or len(self._turns) >= MAX_TURNS
        if full:
            reason = "shutdown" if closed else "full"
            if spool.put(late, owned=False):
                log.warning("chat_store_handed_over", reason=reason, **_ids(late))
                return True
            self._abandon(late, reason)
            return False
        spooled = spool.put(late)
        with self._lock:
            self._turns.append(_Late(late, time.monotonic(), spooled))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="chat-late-store", daemon=True
                )
                self._thread.start()
        log.warning(
            "chat_store_deferred",
            conversation_id=late.conversation_id,
            message_id=late.message_id,
            finish_reason=late.answer["finish_reason"],
            spooled=spooled,
        )
        return True

    def write_ahead(self, turn: Turn, outcome: Outcome) -> bool | None:
        """Spool a turn whose first store attempt is still under way (the database slow or
        frozen: ``CHAT_LATE_STORE_WRITE_AHEAD_SECONDS`` in, :func:`conversations.chat_api.store`),
        as what that attempt writes, this process its owner: a process killed meanwhile (the
        attempt waits up to ``DB_STATEMENT_TIMEOUT_SECONDS`` + 2 s for a frozen database) left
        no trace of it before — the turn was spooled only once the attempt had failed. The
        attempt that then succeeds takes it out again (:meth:`written`); one that fails keeps it
        as before (:meth:`add`). True when spooled; False when the spool did not take it
        (logged); None when the attempt has not decided what it writes yet (waiting for a
        thread, or for a stream's grounding hop storing the question): ask again later. Called
        on the event loop: it never waits for the turn's lock, and its Redis round trip is the
        one :meth:`add` makes there too; only when the attempt waits for a thread (all of
        ``CHAT_WORKER_THREADS`` held by the frozen database) does it decide the answer's
        tokens and verdict there itself (:func:`conversations.chat.answer_message`)."""
        if turn.persist_lock.acquire(blocking=False):
            try:
                writing = turn_writing(turn, outcome)
            finally:
                turn.persist_lock.release()
        elif (decided := turn.writing) is None:
            return None
        else:
            writing = decided
        late = _late(turn, writing)
        written = spool.put(late)
        if written:
            log.info("chat_store_written_ahead", conversation_id=late.conversation_id,
                     message_id=late.message_id)  # fmt: skip
        return written

    @staticmethod
    def written(turn: Turn) -> None:
        """The turn spooled by :meth:`write_ahead` is stored: out of the spool."""
        spool.remove(str(turn.message_id))

    def _respool(self) -> None:
        """The turns the spool did not take when they were kept (Redis down, or full), tried
        again, oldest first, until one is refused: from then on they outlive the process too
        (``chat_store_spooled``). They lived in its memory only until it exited."""
        with self._lock:
            waiting = [late for late in self._turns if not late.spooled]
        for late in waiting:
            if not spool.put(late.turn, quiet=True):
                return
            late.spooled = True
            log.info("chat_store_spooled", conversation_id=late.turn.conversation_id,
                     message_id=late.turn.message_id)  # fmt: skip

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
                unspooled = not all(late.spooled for late in self._turns)
            if unspooled:
                self._respool()
            with self._lock:
                spooled = any(late.spooled for late in self._turns)
            if spooled and not self._stopping.is_set():
                spool.renew()  # this process lives: the drain leaves its turns alone
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
            done = late_turn_store(late.turn)
        except OperationalError:  # still not answering: the next attempt comes later
            return False
        except Exception:
            log.exception("chat_store_abandoned", reason="error", **_ids(late.turn))
            spool.remove(late.turn.message_id)
            return True
        finally:
            close_old_connections()
        spool.remove(late.turn.message_id)
        seconds = time.monotonic() - late.since
        if done in DROPPED:
            _dropped(late.turn, done, seconds)
            return True
        log.info(
            "chat_stored_late",
            conversation_id=late.turn.conversation_id,
            message_id=late.turn.message_id,
            already_stored=done == "already_stored",
            seconds=round(seconds, 1),
        )
        return True

    def _drop(self, late: _Late, reason: str) -> None:
        with self._lock:
            if self._turns and self._turns[0] is late:
                self._turns.popleft()
        spool.remove(late.turn.message_id)
        self._abandon(late.turn, reason)

    def stop(self, seconds: float | None = None) -> None:
        """At exit: the turns still held are tried once more, for at most ``seconds``
        (``CHAT_LATE_STORE_EXIT_SECONDS``), by the thread that tries them (one attempt at a
        time), at once and then as often as the database lets it. Those still held then are
        handed over to the drain (in the spool: ``chat_store_handed_over``, with their ids; this
        process's lease ends, so the next drain takes them at once); one the spool could not
        take goes with the process, logged ``chat_store_abandoned`` with its ids, so that an
        operator knows which conversation misses its last answer. With nothing held it returns
        at once."""
        with self._lock:
            held = len(self._turns)
            if seconds is None:
                seconds = float(settings.CHAT_LATE_STORE_EXIT_SECONDS) if held else 0.0
            # From now on a turn added once this has passed is handed over at once (add).
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
            left, self._turns = list(self._turns), deque()
        for late in left:
            # One the spool refused when it was kept may be taken now (Redis back): no owner.
            if late.spooled or spool.put(late.turn, owned=False):
                log.warning("chat_store_handed_over", reason="shutdown", **_ids(late.turn))
            else:
                self._abandon(late.turn, "shutdown")
        if any(late.spooled for late in left):
            spool.release()

    @staticmethod
    def _abandon(late: LateTurn, reason: str) -> None:
        log.error("chat_store_abandoned", reason=reason, **_ids(late))


late_stores = LateStores()
# Before logging's own handler at exit (they run last registered first): the lines get out.
atexit.register(late_stores.stop)

# The most turns one drain takes.
DRAIN_TURNS = 100


def late_turns_drain() -> dict[str, int]:
    """Store the spool's orphans — turns whose process died (``SIGKILL``, a crash, the OOM
    killer) or exited (handed over) before it could store them — oldest first, one attempt
    each: the Celery beat task ``conversations.drain_late_turns`` (every 30 s) and each API
    process once at its start. A database still not answering leaves the rest to the next
    drain. Each turn stored is ``chat_store_recovered`` (``already_stored`` when an earlier
    attempt had stored it: nothing written twice); counts returned."""
    counts = {"stored": 0, "already_stored": 0, "dropped": 0, "failed": 0, "expired": 0,
              "left": 0}  # fmt: skip
    turns = spool.claim(DRAIN_TURNS)
    for n, late in enumerate(turns):
        age = time.time() - late.since
        if age > KEEP_SECONDS:
            spool.remove(late.message_id)
            LateStores._abandon(late, "expired")
            counts["expired"] += 1
            continue
        close_old_connections()
        try:
            done = late_turn_store(late)
        except OperationalError as exc:
            rest = [turn.message_id for turn in turns[n:]]
            spool.disown(rest)
            counts["left"] = len(rest)
            log.warning("chat_store_drain_waiting", turns=len(rest), error=type(exc).__name__)
            break
        except Exception:
            log.exception("chat_store_abandoned", reason="error", **_ids(late))
            spool.remove(late.message_id)
            counts["failed"] += 1
            continue
        finally:
            close_old_connections()
        spool.remove(late.message_id)
        if done in DROPPED:
            counts["dropped"] += 1
            _dropped(late, done, age)
            continue
        counts[done] += 1
        log.info("chat_store_recovered", already_stored=done == "already_stored",
                 seconds=round(age, 1), **_ids(late))  # fmt: skip
    if not counts["left"]:  # the database answers (or was not asked)
        receipts_prune()
    return counts


def receipts_prune() -> int:
    """Delete the turn receipts older than ``RECEIPT_SECONDS`` (no store of theirs can come
    any more): one statement, by the receipts' BRIN index. Logged, not raised, when the
    database does not answer: the next drain prunes them."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=RECEIPT_SECONDS)
    close_old_connections()
    try:
        pruned, _ = TurnReceipt.all_tenants.filter(created_at__lt=cutoff).delete()
    except DatabaseError as exc:
        log.warning("chat_receipts_prune_failed", error=type(exc).__name__)
        return 0
    finally:
        close_old_connections()
    return pruned


def drain_at_start() -> None:
    """An API process's drain, once, a lease after it starts (a process killed just before,
    in the container this one replaces, holds its turns until then), in a thread of its own."""

    def run() -> None:
        time.sleep(float(settings.CHAT_LATE_STORE_LEASE_SECONDS))
        try:
            late_turns_drain()
        except Exception:  # the periodic drain comes anyway
            log.exception("chat_store_drain_failed")

    threading.Thread(target=run, name="chat-late-drain", daemon=True).start()

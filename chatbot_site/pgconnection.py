"""The psycopg connection class of the API's pooled connections: a database that does not
answer is given up on after a bound, as the server's own ``statement_timeout`` would have.

A PostgreSQL that takes a statement and never answers (stopped with SIGSTOP, frozen, or
partitioned behind a TCP connection the kernel keeps open) cannot cancel anything: its
``statement_timeout`` never fires, and psycopg waits on the socket for as long as the server is
gone. Every request that met it pinned its thread (a chat hop: one of ``CHAT_WORKER_THREADS``)
and its pooled connection until the server woke: 79 s and more under ``make run``, no answer at
all while it lasted. Here every wait for the server's answer is bounded; past the bound the
connection is closed (its protocol state is unknown: the pool discards it) and the statement
fails with :class:`DatabaseNoAnswer`, an ``OperationalError``, which the API answers
``503 service_unavailable`` like a statement the server cancelled.

Once the server has stopped answering, this process says so at once: see :class:`Outage`.

Imported by the settings: nothing of Django here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Self, TypeVar, cast

import psycopg
import structlog
from psycopg import errors
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus
from psycopg.waiting import Wait

RV = TypeVar("RV")

log = structlog.get_logger("chatbot.database")

# Past the server's own statement_timeout by this much before the client gives up: a server
# that works cancels the statement first, and its error says more than ours.
ANSWER_GRACE_SECONDS = 2.0


# While the server is known not to answer, one attempt at a time is let through to find out
# whether it is back, at most this often.
RETRY_SECONDS = 1.0


class DatabaseNoAnswer(psycopg.OperationalError):
    """The server did not answer within the bound; the connection was closed."""


class DatabaseDown(psycopg.OperationalError):
    """The server has not answered lately (:class:`Outage`): not asked again yet."""


class FailureLog:
    """The log of a failure that lasts: ``started`` (ERROR, once, with what failed), then at
    most one ``continues`` (WARNING) every ``summary_seconds`` with the failures counted since
    the last line, and ``ended`` (WARNING, once) with its duration and the failures in all.
    Each failure while it lasts is counted here instead of writing a line of its own: one each
    made hundreds of lines a second under load, while an operator read the log to find out
    what had happened. The database's outage (:class:`Outage`) and health's failing probes
    (:mod:`chatbot_site.health`) are logged so."""

    summary_seconds = 10.0  # DB_OUTAGE_LOG_SECONDS (set when Django starts: apps.py)

    def __init__(
        self, logger: Any, *, started: str, continues: str, ended: str, counted: str
    ) -> None:
        self.failing = False
        self._log = logger
        self._events = (started, continues, ended)
        self._counted = counted  # the name of the count's fields
        self._lock = threading.Lock()
        self._since = 0.0  # when it started (monotonic)
        self._count = 0  # failures counted since then
        self._summary_at = 0.0  # when the last line about it was written
        self._summarised = 0  # ``_count`` then

    def failed(self, cause: BaseException | None = None, *, counted: bool = False) -> None:
        """It fails: the line that says it started (``cause``: what failed), or else a summary
        if one is due. ``counted``: this failure is one of those the lines count (a probe that
        failed; an outage counts the requests it refuses, :meth:`counts`, not its attempts)."""
        with self._lock:
            now = time.monotonic()
            started = not self.failing
            self.failing = True
            if started:
                self._since = self._summary_at = now
                self._count = self._summarised = 0
            self._count += counted
            summary = None if started else self._summary(now)
        if started:
            self._log.error(
                self._events[0],
                cause=type(cause).__name__ if cause is not None else None,
                error=str(cause).strip()[:300] if cause is not None else None,
            )
        elif summary is not None:
            self._log.warning(self._events[1], **summary)

    def counts(self) -> bool:
        """Whether a failure now is one of this one's: then it is counted for its lines (and
        writes none of its own). False while it is not failing: the caller logs as before."""
        if not self.failing:  # one read; the lock only while it fails
            return False
        with self._lock:
            if not self.failing:
                return False
            self._count += 1
            summary = self._summary(time.monotonic())
        if summary is not None:
            self._log.warning(self._events[1], **summary)
        return True

    def ended(self) -> None:
        if not self.failing:  # one read on every success; the lock only when it changes
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
            seconds, count = time.monotonic() - self._since, self._count
        self._log.warning(self._events[2], seconds=round(seconds, 1), **{self._counted: count})

    def _summary(self, now: float) -> dict[str, Any] | None:
        """The fields of the next ``continues`` line if one is due (call under the lock)."""
        if now - self._summary_at < self.summary_seconds:
            return None
        fields = {
            "seconds": round(now - self._since, 1),
            self._counted: self._count - self._summarised,  # since the last line
            f"{self._counted}_total": self._count,
        }
        self._summary_at, self._summarised = now, self._count
        return fields


class Outage:
    """What this process knows of a server that stopped answering: a wait for its answer past
    the bound, a connection attempt that timed out, or one that failed twice in a row
    (:meth:`BoundedConnection._confirm`), makes it *down* until it next answers. While it is
    down, a request about to wait for a connection (pooled or not:
    :mod:`chatbot_site.postgresql`) asks :meth:`admits` first: one attempt every
    ``RETRY_SECONDS`` (or, while one is still out, once its bound has passed) is let through to
    find out, and the rest fail at once (:class:`DatabaseDown`) instead of each holding a thread
    for its own bound. Before, the requests queued behind those threads (a chat hop's:
    ``CHAT_WORKER_THREADS``) each waited their turn: under ``make run`` 33 of 40 chats sent
    during a 30 s freeze waited all of it. Health asks on its own, and its answers count.

    It is also what the log says of an outage (:class:`FailureLog`): ``database_outage_started``
    (ERROR, with what failed) once, ``database_outage_continues`` (WARNING) at most every
    ``DB_OUTAGE_LOG_SECONDS`` with the requests refused meanwhile, ``database_outage_ended``
    (WARNING) once, with its duration and the requests refused in all. The requests it refuses
    write no line of their own (:meth:`absorbs`) but their access line, and neither do health's
    probes nor psycopg_pool's failed connection attempts (:class:`QuietDuringOutage`)."""

    def __init__(self) -> None:
        self.log = FailureLog(
            log,
            started="database_outage_started",
            continues="database_outage_continues",
            ended="database_outage_ended",
            counted="refused",
        )
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.log.failing

    def answered(self) -> None:
        if self.log.failing:  # one read on every answer (every statement): no call unless down
            self.log.ended()

    def failed(self, *, attempt: bool = False, cause: BaseException | None = None) -> None:
        """No answer. ``attempt``: it was the attempt :meth:`admits` let through, and the next
        one may come ``RETRY_SECONDS`` on; other failures do not cut one that is still out
        short (more attempts at once would each hold a thread for their bound again).
        ``cause``: what failed, for the line that says the outage started."""
        with self._lock:
            retry_at = time.monotonic() + RETRY_SECONDS
            self._retry_at = retry_at if attempt else max(self._retry_at, retry_at)
        self.log.failed(cause)

    def absorbs(self) -> bool:
        """Whether a request that failed on the database now is one of a known outage's: then it
        is counted for the outage's lines instead of logging its own (the caller's
        ``database_unavailable``). False while the server is up: logged as before."""
        return self.log.counts()

    def refusing(self) -> bool:
        """Down, and not yet time to try again (nothing is changed)."""
        return self.down and time.monotonic() < self._retry_at

    def admits(self, bound: float) -> bool:
        """Whether to try: up, or down and this is the attempt that finds out (the next one
        comes ``bound`` seconds on unless this one's outcome is known sooner)."""
        if not self.down:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + bound
            return True


outage = Outage()


class QuietDuringOutage(logging.Filter):
    """psycopg_pool's lines (a warning per failed connection attempt, per broken connection
    discarded) while :data:`outage` is known: the outage's own lines say it, with the first
    failure's cause; each attempt wrote its own before, every second or so per process for as
    long as it lasted. Its lines outside an outage pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not outage.down


class BoundedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server is bounded by ``answer_timeout`` seconds
    (``None``: unbounded), except for the rest of a transaction after :meth:`lift_bound`."""

    answer_timeout: float | None = None
    _unbounded = False

    def lift_bound(self) -> None:
        """No bound until the current transaction ends (as ``SET LOCAL statement_timeout = 0``
        lifts the server's): for a statement that grows with the data it deletes."""
        self._unbounded = True

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        # Whatever the bound, even none (DB_STATEMENT_TIMEOUT_SECONDS=0): the outage is known,
        # so it is logged once (:class:`Outage`). Unbounded, this process never knew it, and
        # psycopg_pool's warning per failed attempt and each refused request's ERROR line were
        # all the log said, several a second for as long as the database was gone.
        try:
            connection = super().connect(conninfo, **kwargs)
        except errors.ConnectionTimeout as exc:  # no answer in DB_CONNECT_TIMEOUT (2 s at least)
            outage.failed(cause=exc)
            raise
        except psycopg.OperationalError:  # refused, reset, closed while it started: at once
            connection = cls._confirm(conninfo, **kwargs)
        outage.answered()
        return connection

    @classmethod
    def _confirm(cls, conninfo: str, **kwargs: Any) -> Self:
        """A connection attempt that failed at once, tried again at once: only a second failure
        makes the server *down* (:class:`Outage`). One such failure, alone, turned every request
        of the process away for ``RETRY_SECONDS`` (a dropped handshake, a server restarting its
        listener), while the pool's connections still worked. The second attempt costs little
        when the server refuses (a round trip), or its connection if it answers; a frozen server
        is not confirmed this way (its kernel still accepts connections: it is the timeout
        above, or a statement's bound, that tells) and a failure that took the whole
        ``DB_CONNECT_TIMEOUT`` needs no second one."""
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as again:
            outage.failed(cause=again)
            raise

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        bound = self.answer_timeout
        if self._unbounded:
            if self.pgconn.transaction_status == TransactionStatus.IDLE:  # the transaction ended
                self._unbounded = False
            else:
                bound = None
        if timeout is not None or (bound is None and not outage.down):
            return super().wait(gen, interval, timeout)
        read: list[bool] = []
        if bound is None:  # down, unbounded: an answer ends the outage (as connecting does)
            answer = super().wait(_reading(gen, read), interval, None)
            if read:
                outage.answered()
            return answer
        try:
            answer = super().wait(_reading(gen, read), interval, bound)
        except errors._WaitTimeout:  # psycopg's own: it closes the connection in the same case
            self.pgconn.finish()  # mid-statement: never to be used again (the pool discards it)
            failure = DatabaseNoAnswer(f"no answer from the database in {bound:g} s")
            outage.failed(cause=failure)
            raise failure from None
        if read:  # the server said something
            outage.answered()
        return answer


def _reading(gen: PQGen[RV], read: list[bool]) -> PQGen[RV]:
    """``gen``, noting in ``read`` whether it read from the server. Some complete without a
    word from it (setting ``autocommit`` on an idle connection, which Django does to every
    connection it takes from the pool): taken for an answer, they ended an outage while the
    server was still frozen, and the requests after them each waited their bound again."""
    try:
        wait = next(gen)
        while True:
            if wait & Wait.R and not read:
                read.append(True)
            wait = gen.send((yield wait))
    except StopIteration as end:
        return cast(RV, end.value)


def bounded_connection_class(statement_timeout: float) -> type[BoundedConnection]:
    """The class for connections whose server cancels statements after ``statement_timeout``
    seconds (``DB_STATEMENT_TIMEOUT_SECONDS``; 0: no limit, and then no client bound either)."""
    bound = statement_timeout + ANSWER_GRACE_SECONDS if statement_timeout > 0 else None
    return type("BoundedConnection", (BoundedConnection,), {"answer_timeout": bound})

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

import threading
import time
from typing import Any, Self, TypeVar

import psycopg
from psycopg import errors
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus

RV = TypeVar("RV")

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


class Outage:
    """What this process knows of a server that stopped answering: a wait for its answer past
    the bound, or a connection attempt that failed or timed out, makes it *down* until it next
    answers. While it is down, a request about to wait for a connection (pooled or not:
    :mod:`chatbot_site.postgresql`) asks :meth:`admits` first: one attempt every
    ``RETRY_SECONDS`` (or, while one is still out, once its bound has passed) is let through to
    find out, and the rest fail at once (:class:`DatabaseDown`) instead of each holding a thread
    for its own bound. Before, the requests queued behind those threads (a chat hop's:
    ``CHAT_WORKER_THREADS``) each waited their turn: under ``make run`` 33 of 40 chats sent
    during a 30 s freeze waited all of it. Health asks on its own, and its answers count."""

    def __init__(self) -> None:
        self.down = False
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def answered(self) -> None:
        if self.down:  # one read on every answer; the lock only when it changes
            with self._lock:
                self.down = False

    def failed(self, *, attempt: bool = False) -> None:
        """No answer. ``attempt``: it was the attempt :meth:`admits` let through, and the next
        one may come ``RETRY_SECONDS`` on; other failures do not cut one that is still out
        short (more attempts at once would each hold a thread for their bound again)."""
        with self._lock:
            self.down = True
            retry_at = time.monotonic() + RETRY_SECONDS
            self._retry_at = retry_at if attempt else max(self._retry_at, retry_at)

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
        if cls.answer_timeout is None:
            return super().connect(conninfo, **kwargs)
        try:
            connection = super().connect(conninfo, **kwargs)
        except psycopg.OperationalError:  # refused, timed out (DB_CONNECT_TIMEOUT), gone
            outage.failed()
            raise
        outage.answered()
        return connection

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        bound = self.answer_timeout
        if self._unbounded:
            if self.pgconn.transaction_status == TransactionStatus.IDLE:  # the transaction ended
                self._unbounded = False
            else:
                bound = None
        if timeout is not None or bound is None:
            return super().wait(gen, interval, timeout)
        try:
            answer = super().wait(gen, interval, bound)
        except errors._WaitTimeout:  # psycopg's own: it closes the connection in the same case
            self.pgconn.finish()  # mid-statement: never to be used again (the pool discards it)
            outage.failed()
            raise DatabaseNoAnswer(f"no answer from the database in {bound:g} s") from None
        outage.answered()
        return answer


def bounded_connection_class(statement_timeout: float) -> type[BoundedConnection]:
    """The class for connections whose server cancels statements after ``statement_timeout``
    seconds (``DB_STATEMENT_TIMEOUT_SECONDS``; 0: no limit, and then no client bound either)."""
    bound = statement_timeout + ANSWER_GRACE_SECONDS if statement_timeout > 0 else None
    return type("BoundedConnection", (BoundedConnection,), {"answer_timeout": bound})

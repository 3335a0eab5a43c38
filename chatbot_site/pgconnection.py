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

Imported by the settings: nothing of Django here.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus

RV = TypeVar("RV")

# Past the server's own statement_timeout by this much before the client gives up: a server
# that works cancels the statement first, and its error says more than ours.
ANSWER_GRACE_SECONDS = 2.0


class DatabaseNoAnswer(psycopg.OperationalError):
    """The server did not answer within the bound; the connection was closed."""


class BoundedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server is bounded by ``answer_timeout`` seconds
    (``None``: unbounded), except for the rest of a transaction after :meth:`lift_bound`."""

    answer_timeout: float | None = None
    _unbounded = False

    def lift_bound(self) -> None:
        """No bound until the current transaction ends (as ``SET LOCAL statement_timeout = 0``
        lifts the server's): for a statement that grows with the data it deletes."""
        self._unbounded = True

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
            return super().wait(gen, interval, bound)
        except errors._WaitTimeout:  # psycopg's own: it closes the connection in the same case
            self.pgconn.finish()  # mid-statement: never to be used again (the pool discards it)
            raise DatabaseNoAnswer(f"no answer from the database in {bound:g} s") from None


def bounded_connection_class(statement_timeout: float) -> type[BoundedConnection]:
    """The class for connections whose server cancels statements after ``statement_timeout``
    seconds (``DB_STATEMENT_TIMEOUT_SECONDS``; 0: no limit, and then no client bound either)."""
    bound = statement_timeout + ANSWER_GRACE_SECONDS if statement_timeout > 0 else None
    return type("BoundedConnection", (BoundedConnection,), {"answer_timeout": bound})

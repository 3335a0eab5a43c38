"""Django's PostgreSQL backend, with every connection it makes of ``OPTIONS["connection_class"]``
(the settings': :class:`chatbot_site.pgconnection.BoundedConnection`, each wait for the server's
answer bounded), whether the pool makes it (``DB_POOL``) or Django itself (``DB_POOL=false``).

Django's own backend connects with ``psycopg.connect`` when there is no pool, and only a pool
takes a connection class: with ``DB_POOL=false`` a PostgreSQL that stopped answering held every
request that had a connection for as long as it was gone (chats 30 s of a 30 s freeze under
``make run``, with ``DB_STATEMENT_TIMEOUT_SECONDS=3``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db.backends.postgresql import base
from django.utils.asyncio import async_unsafe
from psycopg import IsolationLevel

from chatbot_site.pgconnection import DatabaseDown, outage


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def connection_class(self) -> type[psycopg.Connection[Any]]:
        cls: type[psycopg.Connection[Any]] = self.settings_dict["OPTIONS"].get(
            "connection_class", psycopg.Connection
        )
        return cls

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params.pop("connection_class", None)  # ours, not a connection parameter
        return params

    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"]
        pool = options.get("pool")
        if pool and not (isinstance(pool, dict) and "connection_class" in pool):
            # Django makes the pool of OPTIONS["pool"]: the pool's connections are of the class
            options["pool"] = {**(pool if isinstance(pool, dict) else {}),
                               "connection_class": self.connection_class}  # fmt: skip
        return super().pool  # type: ignore[misc]  # django-stubs do not have it

    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        bound = getattr(self.connection_class, "answer_timeout", None)
        if bound is None:  # DB_STATEMENT_TIMEOUT_SECONDS=0: no bound, so every request tries
            return self._new_connection(conn_params)  # (an outage is still known and logged)
        attempt = outage.down
        if not outage.admits(bound):
            # Not another wait for the pool (DB_POOL_TIMEOUT) or a connection: see Outage.
            raise DatabaseDown("the database has not answered lately; not asked again yet")
        try:
            return self._new_connection(conn_params)
        except psycopg.OperationalError as exc:  # e.g. PoolTimeout: the server is still not back
            if attempt:
                outage.failed(attempt=True, cause=exc)
            raise

    def _new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool is not None:
            return super().get_new_connection(conn_params)
        # Django's own without a pool, but of the class instead of psycopg.connect's.
        level = self.settings_dict["OPTIONS"].get("isolation_level")
        self.isolation_level = IsolationLevel(
            IsolationLevel.READ_COMMITTED if level is None else level
        )
        connection = self.connection_class.connect(**conn_params)
        if level is not None:
            connection.isolation_level = self.isolation_level
        return connection

    def is_usable(self) -> bool:
        # A connection kept from an earlier request (DB_POOL=false) is not asked while the
        # server is known not to answer: closed, and the new one is refused at once.
        return not outage.refusing() and bool(super().is_usable())

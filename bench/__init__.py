"""Benchmarks (`make bench`): each is ``python -m bench.<name>`` under the test settings, with a
database of its own made by Django's test-database machinery."""

from __future__ import annotations

import os

# A Redis database of their own (a serial test run's is 15, its xdist workers' 14, 13 ...: the
# settings.test; a `make run`'s 0): the test suite empties its databases
# before every test, so a benchmark sharing it (a `pytest` run in the same checkout while
# `make bench` ran) lost its servers' turn claims, quota holds and rate-limit state mid-run — a
# likely source of the `turn_release_failed` `LockNotOwnedError` lines once seen under bench
# load (conversations.services.turn_release now says `reason=removed` for such a claim).
os.environ.setdefault("REDIS_DB", "1")


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.test")
    import django

    django.setup()


def create_database(name: str | None = None, *, reuse: bool = False) -> str:
    """Create the benchmark's database (``name``, else Django's test name; an existing one is
    kept with ``reuse``) and switch the connection to it. Returns what
    :func:`destroy_database` needs."""
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = str(connection.settings_dict["NAME"])
    if name:
        connection.settings_dict["TEST"]["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=reuse)
    return old_name


def destroy_database(old_name: str) -> None:
    from django.db import connection

    connection.creation.destroy_test_db(old_name, verbosity=0)

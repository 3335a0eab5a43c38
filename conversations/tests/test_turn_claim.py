"""A turn's claim on its conversation (``conversations.services.turn_claim``) against a real
Redis that stalls or loses its keys."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
from django.conf import settings

from chatbot_site.embedded import ensure_redis, stop_redis
from chatbot_site.redis import get_redis
from conversations.services import turn_claim, turn_release
from tests.processes import wait_for


@pytest.fixture
def quick_redis(settings, tmp_path):
    """The service's Redis client with a short socket timeout, on a Redis server of the test's
    own: ``DEBUG SLEEP`` stalls a whole server, and the suite's other xdist workers share the
    embedded one (their per-test FLUSHDB timed out behind the stall)."""
    settings.REDIS_SOCKET_TIMEOUT = 0.2
    settings.REDIS_URL = f"unix://{ensure_redis(tmp_path)}?db=0"
    get_redis.cache_clear()
    yield get_redis()
    get_redis.cache_clear()
    stop_redis(tmp_path)


def redis_asleep(seconds: float) -> None:
    """Redis busy for ``seconds`` (``DEBUG SLEEP``, as a server stalled by a long command or
    starved of CPU): returns once it no longer answers."""
    sleeper = redis.Redis.from_url(settings.REDIS_URL)
    sleeper.connection_pool.get_connection().send_command("DEBUG", "SLEEP", str(seconds))
    probe = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.02)

    def asleep() -> bool:
        try:
            probe.ping()
        except redis.TimeoutError:
            return True
        return False

    wait_for(asleep, timeout=5, what="Redis to stall")


def test_a_claim_whose_answer_redis_never_sent_is_released_with_its_turn(quick_redis):
    """A claim's SET that Redis applied after the client had given up on its answer (a stall
    past ``REDIS_SOCKET_TIMEOUT``) held the session for ``TURN_SECONDS`` (seven minutes) with a
    token no one had: every next turn of that session was a ``409``. Now the turn goes on
    (unclaimed, as without Redis) and releases it at its end."""
    conversation_id = uuid.uuid4()
    key = f"chatbot:turn:{conversation_id}"
    quick_redis.ping()  # connected: the claim's SET is sent (a new connection's handshake is not)
    redis_asleep(1.5)
    claim = turn_claim(conversation_id=conversation_id)  # its answer never comes
    watcher = redis.Redis.from_url(settings.REDIS_URL)
    wait_for(lambda: watcher.exists(key), timeout=10, what="the SET to be applied")
    if claim is not None:  # the turn ends
        turn_release(claim)
    wait_for(lambda: not watcher.exists(key), timeout=5, what="the session to be free")


def test_a_claim_removed_by_someone_else_is_logged_as_such(quick_redis, caplog):
    """A claim found gone at its turn's end was one ``turn_release_failed`` line, whether it
    lapsed (a turn past ``TURN_SECONDS``) or someone emptied Redis (the test suite flushes its
    database before every test: a benchmark sharing it saw ``LockNotOwnedError``). The line
    now says which, and how long the claim was held."""
    caplog.set_level(logging.INFO)
    claim = turn_claim(conversation_id=uuid.uuid4())
    assert claim is not None
    quick_redis.flushdb()
    turn_release(claim)
    failed = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "turn_release_failed"
    ]
    assert len(failed) == 1, caplog.text
    assert failed[0]["error"] == "LockNotOwnedError"
    assert failed[0]["reason"] == "removed" and failed[0]["held_seconds"] < 60

"""The late store's spool: each turn kept for a late store (:mod:`conversations.late_store`),
written to Redis before it is held in memory — or, when its first store is slow, while that
store is still under way (:meth:`conversations.late_store.LateStores.write_ahead`) — so that it
outlives the process that holds it.

A turn is the key ``TURN + its answer's message id`` (the turn as it is to be stored, JSON:
:class:`LateTurn`), one field of the hash ``TURNS`` (its id → ``tenant_id/conversation_id``:
what the drain lists and a deletion looks up) and one of ``OWNERS`` (→ the token of the process
that holds it). A process that holds turns keeps the key ``ALIVE + token`` alive
(``CHAT_LATE_STORE_LEASE_SECONDS``); a turn whose owner's key is gone (the process was killed,
crashed, or handed it over on its way out) is an orphan, which the drain (:meth:`Spool.claim`,
then :func:`conversations.late_store.late_turns_drain`) takes over with a compare-and-set, one
drain at a time. Whoever stores a turn removes it afterwards; a turn stored whose removal did
not happen (a process killed between the two) is found stored by the next attempt, which
writes nothing (:func:`conversations.late_store.late_turn_store`).

Everything expires: a turn's key ``KEEP_SECONDS`` (an hour) after it was first kept — the
turn is abandoned then anyway — and ``TURNS`` and ``OWNERS`` ``KEEP_SECONDS`` after the last
turn was written (each write sets it again), so the masked chat text is never in Redis past
an hour, whether or not a drain ever runs. A deleted conversation's turns are removed from the
spool as the deletion commits (:meth:`Spool.forget`).

What a turn holds is what the database would: the masked question(s), the guarded answer and
its citations, the ids, the tokens; no prompt, passages or raw input. It is keyed by the
answer's random id and carries its tenant's id, which every write it makes is scoped by.
Redis keeps it as long as Redis keeps its data: with ``appendonly`` (docker-compose's and
``make run``'s embedded server: fsync every second) a Redis restart loses at most the last
second's; without persistence a Redis restart loses the spool.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from django.conf import settings
from redis.exceptions import RedisError

from chatbot_site.redis import get_redis

log = structlog.get_logger(__name__)

TURNS = "chatbot:late:turns"
OWNERS = "chatbot:late:owners"
ALIVE = "chatbot:late:alive:"
TURN = "chatbot:late:turn:"
# The most turns the spool holds (all processes together): past it a turn is kept in memory
# only, as before the spool.
MAX_SPOOLED = 10_000
# How long a turn is kept at most (in a process, in the spool): past it, it is abandoned
# (``chat_store_abandoned``, ``reason=expired``), and Redis has let its key expire.
KEEP_SECONDS = 3600.0

# KEYS: TURNS, OWNERS, the owner's alive key, the turn's key. ARGV: id, turn, owner ("" for
# none), lease (s), the most turns, the turn's TTL (s), its reference, the turns' key prefix,
# KEEP_SECONDS. 1 when written. A full spool first drops the references to expired turns.
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
    if redis.call('EXISTS', ARGV[8] .. id) == 0 then
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
    end
  end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
end
redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[7])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[9])
return 1
"""
# KEYS: TURNS, OWNERS. ARGV: the alive keys' prefix, the claimer's token, the turns' key prefix,
# KEEP_SECONDS, ids. The turns among ids whose owner is gone, now the claimer's: [id, turn, id,
# turn, ...]; the references to turns expired meanwhile are dropped. (OWNERS may have been
# emptied, hence gone, since the last put: it expires all the same.)
_CLAIM = """
local taken = {}
for i = 5, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if not owner or (owner ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. owner) == 0) then
    local turn = redis.call('GET', ARGV[3] .. ARGV[i])
    if turn then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[2])
      if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
      table.insert(taken, ARGV[i])
      table.insert(taken, turn)
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HDEL', KEYS[2], ARGV[i])
    end
  end
end
return taken
"""
# KEYS: OWNERS. ARGV: the token, ids. Those still the token's have no owner any more.
_DISOWN = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""
# KEYS: TURNS, OWNERS. ARGV: the turns' key prefix, a reference (tenant_id/conversation_id).
# The turns of that reference, removed: their ids. With no turn spooled (as nearly always), one
# HLEN.
_FORGET = """
if redis.call('HLEN', KEYS[1]) == 0 then return {} end
local gone = {}
local refs = redis.call('HGETALL', KEYS[1])
for i = 1, #refs, 2 do
  if refs[i + 1] == ARGV[2] then
    redis.call('DEL', ARGV[1] .. refs[i])
    redis.call('HDEL', KEYS[1], refs[i])
    redis.call('HDEL', KEYS[2], refs[i])
    table.insert(gone, refs[i])
  end
end
return gone
"""


@dataclass
class LateTurn:
    """A turn as it is to be stored: what :func:`conversations.chat.turn_write` takes, as
    plain data (JSON in the spool)."""

    message_id: str
    tenant_id: str
    bot_id: str
    api_key_id: str | None
    conversation_id: str
    # {"title", "metadata"} of a conversation the store creates; None: it is stored already.
    new_conversation: dict[str, Any] | None
    questions: list[dict[str, str]]  # the user's messages not stored yet (masked)
    answer: dict[str, Any]  # the answer's Message fields (content, citations, tokens, ...)
    since: float  # when it was kept (time.time())

    @property
    def ref(self) -> str:
        """What the spool's index says of it: whose conversation it is."""
        return f"{self.tenant_id}/{self.conversation_id}"

    def ttl(self) -> int:
        """How long Redis keeps it yet: until ``KEEP_SECONDS`` after it was kept."""
        return max(1, math.ceil(KEEP_SECONDS - (time.time() - self.since)))

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> LateTurn:
        return cls(**json.loads(raw))


def lease_seconds() -> int:
    return max(1, round(float(settings.CHAT_LATE_STORE_LEASE_SECONDS)))


class Spool:
    """This process's side of the spool: its token (one per process: a forked Celery child
    gets its own), what it puts, renews, removes and claims. Every method logs a Redis that
    does not answer and returns: the spool is a safety net, never a reason to fail a turn."""

    def __init__(self) -> None:
        self._pid = 0
        self._token = ""

    @property
    def token(self) -> str:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._token = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:12]}"
        return self._token

    def put(self, turn: LateTurn, *, owned: bool = True, quiet: bool = False) -> bool:
        """Write ``turn``, this process its owner (``owned``) or no one (the drain takes it),
        for what is left of its ``KEEP_SECONDS``; False when it was not written (Redis down,
        or the spool full), logged unless ``quiet`` (a turn tried again every second)."""
        try:
            written = get_redis().eval(
                _PUT, 4, TURNS, OWNERS, ALIVE + self.token, TURN + turn.message_id,
                turn.message_id, turn.dumps(), self.token if owned else "", lease_seconds(),
                MAX_SPOOLED, turn.ttl(), turn.ref, TURN, math.ceil(KEEP_SECONDS),
            )  # fmt: skip
        except RedisError as exc:
            if not quiet:
                log.warning("chat_store_spool_failed", message_id=turn.message_id,
                            error=type(exc).__name__)  # fmt: skip
            return False
        if not written and not quiet:
            log.warning("chat_store_spool_failed", message_id=turn.message_id, error="full")
        return bool(written)

    def renew(self) -> None:
        """This process still holds its turns (for another lease)."""
        try:
            get_redis().set(ALIVE + self.token, "1", ex=lease_seconds())
        except RedisError as exc:
            log.warning("chat_store_lease_failed", error=type(exc).__name__)

    def release(self) -> None:
        """This process holds its turns no more (it exits): the drain takes them at once."""
        try:
            get_redis().delete(ALIVE + self.token)
        except RedisError as exc:
            log.warning("chat_store_lease_failed", error=type(exc).__name__)

    def remove(self, message_id: str) -> None:
        """The turn is stored (or lost for good): out of the spool."""
        try:
            pipe = get_redis().pipeline(transaction=True)
            pipe.delete(TURN + message_id)
            pipe.hdel(TURNS, message_id)
            pipe.hdel(OWNERS, message_id)
            pipe.execute()
        except RedisError as exc:  # the next attempt finds it stored, and writes nothing
            log.warning("chat_store_unspool_failed", message_id=message_id,
                        error=type(exc).__name__)  # fmt: skip

    def claim(self, limit: int) -> list[LateTurn]:
        """Up to ``limit`` orphans (their owner gone), now this process's, oldest first."""
        client = get_redis()
        try:
            ids = [key.decode() if isinstance(key, bytes) else key for key in client.hkeys(TURNS)]
            if not ids:
                return []
            self.renew()
            taken: list[bytes] = []
            for start in range(0, len(ids), 500):
                taken += client.eval(_CLAIM, 2, TURNS, OWNERS, ALIVE, self.token, TURN,
                                     math.ceil(KEEP_SECONDS), *ids[start : start + 500])  # fmt: skip
                if len(taken) >= 2 * limit:
                    break
        except RedisError as exc:
            log.warning("chat_store_spool_failed", error=type(exc).__name__)
            return []
        turns = []
        for key, raw in zip(taken[0::2], taken[1::2], strict=True):
            try:
                turns.append(LateTurn.loads(raw))
            except (ValueError, TypeError):  # not ours to read (another version's): not a block
                message_id = key.decode() if isinstance(key, bytes) else str(key)
                log.error("chat_store_abandoned", reason="unreadable", message_id=message_id)
                self.remove(message_id)
        turns.sort(key=lambda turn: turn.since)
        if len(turns) > limit:
            self.disown([turn.message_id for turn in turns[limit:]])
        return turns[:limit]

    def disown(self, message_ids: list[str]) -> None:
        """Turns this process took and leaves to the next drain."""
        if not message_ids:
            return
        try:
            get_redis().eval(_DISOWN, 1, OWNERS, self.token, *message_ids)
        except RedisError as exc:  # they are the next drain's once this lease lapses
            log.warning("chat_store_spool_failed", error=type(exc).__name__)

    def forget(self, *, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> list[str]:
        """Remove a deleted conversation's turns (``chat_store_forgotten``, with their ids):
        its chat text leaves Redis with it, and no drain stores it again. One round trip (an
        ``HLEN`` when nothing is spooled). With Redis not answering, logged: the turns then
        expire with ``KEEP_SECONDS``, and one stored meanwhile writes no message (its
        conversation is gone)."""
        try:
            gone = get_redis().eval(_FORGET, 2, TURNS, OWNERS, TURN,
                                    f"{tenant_id}/{conversation_id}")  # fmt: skip
        except RedisError as exc:
            log.warning("chat_store_forget_failed", conversation_id=str(conversation_id),
                        error=type(exc).__name__)  # fmt: skip
            return []
        ids = [key.decode() if isinstance(key, bytes) else str(key) for key in gone]
        if ids:
            log.info("chat_store_forgotten", conversation_id=str(conversation_id),
                     message_ids=ids)  # fmt: skip
        return ids


spool = Spool()

"""Writes for conversations; a turn's claim on its conversation. (Usage and the monthly quota
are the tenant's: :mod:`tenants.usage`.)"""

from __future__ import annotations

import functools
import time
import uuid

import structlog
from django.conf import settings
from django.db import transaction
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock

from chatbot_site.errors import Conflict
from chatbot_site.redis import get_redis
from conversations.late_spool import spool
from conversations.models import Conversation
from tenants.models import Tenant
from tenants.services import Actor, audit_record

log = structlog.get_logger(__name__)


@transaction.atomic
def conversation_delete(*, tenant: Tenant, actor: Actor, conversation: Conversation) -> None:
    """Its row is locked first, so that a turn still being answered either stores its messages
    before them all are deleted or finds the conversation gone (``chat._store``): a message
    written between the two would have failed the deletion (a 500).

    Its turns still waiting in the late store's spool (answered while the database was down)
    are removed as the deletion commits: their chat text stayed in Redis, and the drain stored
    them again — a new conversation's came back, deleted as it was."""
    locked = Conversation.objects.for_tenant(tenant).select_for_update().filter(pk=conversation.pk)
    if not list(locked.values_list("pk", flat=True)):
        return  # deleted meanwhile
    # Its bot: the entry stays readable by a key limited to that bot (knowledge.reach).
    audit_record(
        tenant=tenant,
        actor=actor,
        action="conversation.delete",
        target=conversation,
        changes={"bot_id": conversation.bot_id},
    )
    conversation_id = conversation.pk  # (None once deleted)
    conversation.delete()
    transaction.on_commit(
        functools.partial(spool.forget, tenant_id=tenant.pk, conversation_id=conversation_id)
    )


# A turn's claim (and its hold on the quota) lapses after the longest a turn can take: its LLM
# deadline, plus grounding and storing.
TURN_SECONDS = settings.LLM_TURN_TIMEOUT_SECONDS + 120


class TurnClaim(Lock):
    """A turn's claim (:func:`turn_claim`): redis-py's lock, whose token is its own from the
    moment its SET is sent, and which knows when it was taken and whether Redis said so."""

    since = 0.0
    confirmed = True

    def do_acquire(self, token: str) -> bool:
        # A SET whose answer is lost (Redis stalled past REDIS_SOCKET_TIMEOUT) may still have
        # been applied: released with the turn by this token, it holds the session no longer.
        self.local.token = token
        self.since = time.monotonic()
        return bool(super().do_acquire(token))


def turn_claim(*, conversation_id: uuid.UUID) -> Lock | None:
    """Claim a conversation for one turn, until :func:`turn_release`: ``409 conflict`` while
    another turn of it is being answered. Two turns at once on one session both read the same
    history and stored their questions and answers interleaved (Q1 Q2 A1 A2), so each answer
    followed the other's question in the history every later turn reads. A claim never
    released (a process that died mid-turn) lapses with a quota hold.

    Without Redis the turn goes on unclaimed, logged (``turn_claim_unavailable``) — but its
    claim is still released at its end: a SET that Redis applied though its answer never came
    (a Redis stalled past ``REDIS_SOCKET_TIMEOUT``) held the session for ``TURN_SECONDS``
    (seven minutes: every next turn a ``409``) with a token no one had."""
    claim = get_redis().lock(
        f"chatbot:turn:{conversation_id}",
        timeout=TURN_SECONDS,
        thread_local=False,
        lock_class=TurnClaim,
    )
    try:
        if claim.acquire(blocking=False):
            return claim
    except RedisError as exc:
        log.warning("turn_claim_unavailable", error=type(exc).__name__)
        claim.confirmed = False
        return claim
    raise Conflict(
        "This conversation is still answering an earlier message; "
        "send the next one when that answer has ended.",
        details={"session_id": str(conversation_id)},
    )


def turn_release(claim: Lock) -> None:
    """End a turn's claim on its conversation (:func:`turn_claim`). A claim found gone is
    logged (``turn_release_failed``, ``LockNotOwnedError``) with how long it was held and why
    it went: ``lapsed`` (held past ``TURN_SECONDS``: another turn may have taken the session
    meanwhile) or ``removed`` (before that: someone else emptied the Redis database —
    ``FLUSHDB``, as the test suite does to its database before every test, so a benchmark
    sharing it lost its claims — or Redis restarted without persistence, or evicted keys
    under a ``maxmemory-policy`` other than ``noeviction``). An unconfirmed claim
    (:func:`turn_claim` without Redis) found gone was never taken: nothing to say."""
    try:
        claim.release()
    except LockNotOwnedError as exc:
        if not getattr(claim, "confirmed", True):
            return
        held = time.monotonic() - getattr(claim, "since", 0.0)
        log.warning("turn_release_failed", error=type(exc).__name__, held_seconds=round(held, 1),
                    reason="lapsed" if held >= TURN_SECONDS else "removed")  # fmt: skip
    except (LockError, RedisError) as exc:
        log.warning("turn_release_failed", error=type(exc).__name__)

"""Writes for conversations; a turn's claim on its conversation. (Usage and the monthly quota
are the tenant's: :mod:`tenants.usage`.)"""

from __future__ import annotations

import uuid

import structlog
from django.conf import settings
from django.db import transaction
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from chatbot_site.errors import Conflict
from chatbot_site.redis import get_redis
from conversations.models import Conversation
from tenants.models import Tenant
from tenants.services import Actor, audit_record

log = structlog.get_logger(__name__)


@transaction.atomic
def conversation_delete(*, tenant: Tenant, actor: Actor, conversation: Conversation) -> None:
    """Its row is locked first, so that a turn still being answered either stores its messages
    before them all are deleted or finds the conversation gone (``chat._store``): a message
    written between the two would have failed the deletion (a 500)."""
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
    conversation.delete()


# A turn's claim (and its hold on the quota) lapses after the longest a turn can take: its LLM
# deadline, plus grounding and storing.
TURN_SECONDS = settings.LLM_TURN_TIMEOUT_SECONDS + 120


def turn_claim(*, conversation_id: uuid.UUID) -> Lock | None:
    """Claim a conversation for one turn, until :func:`turn_release`: ``409 conflict`` while
    another turn of it is being answered. Two turns at once on one session both read the same
    history and stored their questions and answers interleaved (Q1 Q2 A1 A2), so each answer
    followed the other's question in the history every later turn reads. A claim never
    released (a process that died mid-turn) lapses with a quota hold. Without Redis: no claim
    (``None``; turns as before), logged."""
    claim = get_redis().lock(
        f"chatbot:turn:{conversation_id}", timeout=TURN_SECONDS, thread_local=False
    )
    try:
        if claim.acquire(blocking=False):
            return claim
    except RedisError as exc:
        log.warning("turn_claim_unavailable", error=type(exc).__name__)
        return None
    raise Conflict(
        "This conversation is still answering an earlier message; "
        "send the next one when that answer has ended.",
        details={"session_id": str(conversation_id)},
    )


def turn_release(claim: Lock) -> None:
    """End a turn's claim on its conversation (:func:`turn_claim`); one that lapsed is gone."""
    try:
        claim.release()
    except (LockError, RedisError) as exc:
        log.warning("turn_release_failed", error=type(exc).__name__)

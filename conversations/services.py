"""Writes for conversations; usage roll-up and the monthly quota."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from chatbot_site.errors import Conflict, QuotaExceeded
from chatbot_site.redis import get_redis
from conversations.models import Conversation, UsageDaily
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


def month_start(today: dt.date) -> dt.date:
    return today.replace(day=1)


def next_month_start(today: dt.date) -> dt.date:
    return (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def tokens_used_this_month(*, tenant: Tenant, today: dt.date | None = None) -> int:
    today = today or dt.datetime.now(dt.UTC).date()
    totals = (
        UsageDaily.objects.for_tenant(tenant)
        .filter(day__gte=month_start(today))
        .aggregate(
            total=Coalesce(
                Sum(F("prompt_tokens") + F("completion_tokens") + F("embedding_tokens")), 0
            )
        )
    )
    return int(totals["total"])


def quota_check(*, tenant: Tenant, hold: tuple[str, int] | None = None) -> bool:
    """Raise ``429 quota_exceeded`` when the tenant's monthly token quota is used up. Chat calls
    this before any LLM call; one indexed aggregate over at most 31 days x bots x keys rows.

    ``hold``: (turn id, the most tokens the turn can cost) to hold against the quota while the
    turn runs (:func:`quota_release` at its end). Usage is counted when a turn is stored, so
    without holds every turn opened while the quota still had room was admitted: 30 turns at
    once with 300 tokens left spent 15,000. A turn is refused too when the turns in progress
    already hold all that is left; one turn alone is admitted while anything is left, as
    before, so a quota is overspent by one turn at most. Returns whether a hold was placed
    (none without a quota, or with Redis unavailable: then as before, logged)."""
    if tenant.monthly_token_quota is None:
        return False
    used = tokens_used_this_month(tenant=tenant)
    if used >= tenant.monthly_token_quota:
        raise _quota_exceeded(tenant, used, "The monthly token quota is used up.")
    if hold is None:
        return False
    turn_id, tokens = hold
    room = tenant.monthly_token_quota - used
    try:
        placed, held = _hold_script()(
            keys=[_holds_key(tenant.pk)], args=[turn_id, tokens, room, _HOLD_MS]
        )
    except RedisError as exc:
        log.warning("quota_hold_unavailable", error=type(exc).__name__)
        return False
    if not placed:
        raise _quota_exceeded(
            tenant, used, "The monthly token quota is held by answers in progress.", held=held
        )
    return True


def quota_release(*, tenant_id: uuid.UUID, turn_id: str) -> None:
    """End a turn's hold (:func:`quota_check`): its tokens are in the usage roll-up now, or it
    failed. A hold never released (a process that died mid-turn) lapses after the longest a
    turn can take."""
    try:
        get_redis().hdel(_holds_key(tenant_id), turn_id)
    except RedisError as exc:
        log.warning("quota_release_unavailable", error=type(exc).__name__)


# Retry-After of a turn refused while the turns in progress hold the rest of the quota.
QUOTA_HELD_RETRY_SECONDS = 5


def _quota_exceeded(tenant: Tenant, used: int, message: str, held: int = 0) -> QuotaExceeded:
    now = dt.datetime.now(dt.UTC)
    resets = dt.datetime.combine(next_month_start(now.date()), dt.time.min, dt.UTC)
    details: dict[str, object] = {
        "quota": tenant.monthly_token_quota,
        "used": used,
        "resets_at": resets.isoformat().replace("+00:00", "Z"),
    }
    if held:
        details["held"] = held  # by turns in progress; free again when they end
    # Used up: until the month turns. Held by turns in progress: those end within seconds (it
    # said the month's end too, and a client that obeyed waited weeks for a quota with room).
    wait = QUOTA_HELD_RETRY_SECONDS if held else math.ceil((resets - now).total_seconds())
    return QuotaExceeded(
        message,
        details=details,
        # With the key's RateLimit-Limit (chat_api._error): nothing left until the same time.
        headers={
            "Retry-After": str(max(1, wait)),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(max(1, wait)),
        },
    )


def turn_claim(*, conversation_id: uuid.UUID) -> Lock | None:
    """Claim a conversation for one turn, until :func:`turn_release`: ``409 conflict`` while
    another turn of it is being answered. Two turns at once on one session both read the same
    history and stored their questions and answers interleaved (Q1 Q2 A1 A2), so each answer
    followed the other's question in the history every later turn reads. A claim never
    released (a process that died mid-turn) lapses with a quota hold. Without Redis: no claim
    (``None``; turns as before), logged."""
    claim = get_redis().lock(
        f"chatbot:turn:{conversation_id}", timeout=_HOLD_MS / 1000, thread_local=False
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


def _holds_key(tenant_id: object) -> str:
    return f"chatbot:quota-holds:{tenant_id}"


# A hold lapses after the longest a turn can take (its LLM deadline, plus grounding and storing).
_HOLD_MS = int((settings.LLM_TURN_TIMEOUT_SECONDS + 120) * 1000)

# KEYS[1] = the tenant's holds (a hash: turn id -> "tokens:expires_ms"). ARGV = turn id, tokens,
# room (quota - used), ttl_ms. Lapsed holds are dropped; the turn is held if the others leave
# room. Returns {placed (0/1), tokens held by the other turns}.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
    local sep = string.find(entries[i + 1], ':', 1, true)
    if sep == nil or tonumber(string.sub(entries[i + 1], sep + 1)) <= now then
        redis.call('HDEL', KEYS[1], entries[i])
    else
        held = held + tonumber(string.sub(entries[i + 1], 1, sep - 1))
    end
end
if held >= tonumber(ARGV[3]) then
    return {0, held}
end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, held}
"""


def _hold_script() -> Any:
    return get_redis().register_script(_HOLD)


def usage_record(
    *,
    tenant: Tenant,
    bot_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    embedding_tokens: int = 0,
    at: dt.datetime | None = None,
) -> None:
    """Add one request's tokens to the row of its UTC day (one atomic upsert).

    ``at``: when they were spent — for a chat turn, the stored answer's ``created_at``, so that
    the day (and the month its quota counts) is the one the message shows. The day was read
    from the clock after the messages were stored: an answer stored at 23:59:59.999 could be
    counted the next day, or the next month. Default: now (a retrieval; a turn not stored)."""
    from django.db import connection

    day = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO conversations_usagedaily
                (tenant_id, day, bot_id, api_key_id, requests,
                 prompt_tokens, completion_tokens, embedding_tokens)
            VALUES (%s, %s, %s, %s, 1, %s, %s, %s)
            ON CONFLICT (tenant_id, day, bot_id, api_key_id) DO UPDATE SET
                requests = conversations_usagedaily.requests + 1,
                prompt_tokens = conversations_usagedaily.prompt_tokens + EXCLUDED.prompt_tokens,
                completion_tokens =
                    conversations_usagedaily.completion_tokens + EXCLUDED.completion_tokens,
                embedding_tokens =
                    conversations_usagedaily.embedding_tokens + EXCLUDED.embedding_tokens
            """,
            [
                tenant.pk,
                day,
                bot_id,
                api_key_id,
                prompt_tokens,
                completion_tokens,
                embedding_tokens,
            ],
        )

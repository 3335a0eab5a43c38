"""Token usage and the monthly quota: every token the service spends for a tenant — a chat
turn's, a retrieval's, a document's ingestion's — is added to the daily roll-up
(:class:`tenants.models.UsageDaily`) that ``/v1/usage`` and the quota read.

It is the tenant's, below every app that spends tokens: chat (``conversations``) and
ingestion (``knowledge``) both record and check here. Usage lived in ``conversations``, which
``knowledge`` may not import, and ingestion's tokens were counted nowhere."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec

import structlog
from django.db import connection
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from redis.exceptions import RedisError

from chatbot_site.errors import QuotaExceeded
from chatbot_site.redis import get_redis
from tenants.models import Tenant, UsageDaily

log = structlog.get_logger(__name__)
P = ParamSpec("P")


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


def quota_check(
    *, tenant: Tenant, hold: tuple[str, int] | None = None, hold_seconds: float = 0.0
) -> bool:
    """Raise ``429 quota_exceeded`` when the tenant's monthly token quota is used up. Chat calls
    this before any LLM call; one indexed aggregate over at most 31 days x bots x keys rows.

    ``hold``: (turn id, the most tokens the turn can cost) to hold against the quota for at
    most ``hold_seconds``, while the turn runs (:func:`quota_release` at its end). Usage is
    counted when a turn is stored, so without holds every turn opened while the quota still
    had room was admitted: 30 turns at once with 300 tokens left spent 15,000. A turn is
    refused too when the turns in progress already hold all that is left; one turn alone is
    admitted while anything is left, as before, so a quota is overspent by one turn at most.
    Returns whether a hold was placed (none without a quota, or with Redis unavailable: then
    as before, logged)."""
    if tenant.monthly_token_quota is None:
        return False
    used = tokens_used_this_month(tenant=tenant)
    if used >= tenant.monthly_token_quota:
        raise _quota_exceeded(tenant, used, "The monthly token quota is used up.")
    if hold is None:
        return False
    holder, tokens = hold
    placed, held = _place_hold(tenant, used, holder, tokens, hold_seconds, whole=False)
    if placed is False:
        raise _quota_exceeded(
            tenant,
            used,
            "The monthly token quota is held by answers and documents in progress.",
            held=held,
        )
    return bool(placed)


def quota_reserve(*, tenant: Tenant, holder: str, tokens: int, hold_seconds: float) -> bool:
    """Hold ``tokens`` against the quota for ``holder`` (a document's ingestion) for at most
    ``hold_seconds``, or raise ``quota_exceeded`` when they do not all fit in what is left,
    the holds of the turns and documents in progress taken off. Unlike a chat turn's (whose
    cost is known only once answered), a document's cost is known before it is embedded, so
    it must fit whole: a document is not embedded past the quota. Returns whether a hold was
    placed (:func:`quota_release` ends it)."""
    if tenant.monthly_token_quota is None:
        return False
    used = tokens_used_this_month(tenant=tenant)
    placed, held = _place_hold(tenant, used, holder, tokens, hold_seconds, whole=True)
    left = max(0, tenant.monthly_token_quota - used - held)
    if placed is None and used + tokens > tenant.monthly_token_quota:
        placed = False  # without Redis: what is used, no holds
    if placed is False:
        exc = _quota_exceeded(
            tenant,
            used,
            f"The monthly token quota has {left:,} tokens left; {tokens:,} needed.",
            held=held,
        )
        exc.details.update(left=left, needed=tokens)
        raise exc
    return bool(placed)


def quota_release(*, tenant_id: uuid.UUID, holder: str) -> None:
    """End a hold (:func:`quota_check`, :func:`quota_reserve`): its tokens are in the usage
    roll-up now, or it failed. A hold never released (a process that died mid-turn or
    mid-document) lapses after its ``hold_seconds``."""
    try:
        get_redis().hdel(_holds_key(tenant_id), holder)
    except RedisError as exc:
        log.warning("quota_release_unavailable", error=type(exc).__name__)


def _place_hold(
    tenant: Tenant, used: int, holder: str, tokens: int, seconds: float, *, whole: bool
) -> tuple[bool | None, int]:
    """(placed: True, False when there is no room, None when Redis is unavailable; the tokens
    the other holders hold)."""
    room = (tenant.monthly_token_quota or 0) - used
    try:
        placed, held = _hold_script()(
            keys=[_holds_key(tenant.pk)],
            args=[holder, tokens, room, max(1, int(seconds * 1000)), int(whole)],
        )
    except RedisError as exc:
        log.warning("quota_hold_unavailable", error=type(exc).__name__)
        return None, 0
    return bool(placed), int(held)


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


def _holds_key(tenant_id: object) -> str:
    return f"chatbot:quota-holds:{tenant_id}"


# KEYS[1] = the tenant's holds (a hash: holder -> "tokens:expires_ms"). ARGV = holder, tokens,
# room (quota - used), ttl_ms, whole (1: the tokens must all fit in the room the others leave;
# 0: some room is enough). Lapsed holds are dropped. Returns {placed (0/1), tokens held by the
# others}. The hash lives as long as its longest hold.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = 0
local last = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
    local sep = string.find(entries[i + 1], ':', 1, true)
    local expires = sep and tonumber(string.sub(entries[i + 1], sep + 1))
    if expires == nil or expires <= now then
        redis.call('HDEL', KEYS[1], entries[i])
    elseif entries[i] ~= ARGV[1] then
        held = held + tonumber(string.sub(entries[i + 1], 1, sep - 1))
        last = math.max(last, expires)
    end
end
local room = tonumber(ARGV[3])
if held >= room or (ARGV[5] == '1' and held + tonumber(ARGV[2]) > room) then
    return {0, held}
end
local expires = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. expires)
redis.call('PEXPIREAT', KEYS[1], math.max(last, expires))
return {1, held}
"""


def _hold_script() -> Any:
    return get_redis().register_script(_HOLD)


def usage_sql(
    *,
    tenant: Tenant | uuid.UUID,
    bot_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    embedding_tokens: int = 0,
    requests: int = 1,
    at: dt.datetime | None = None,
) -> tuple[str, list[Any]]:
    """The statement and parameters that add one request's tokens to the row of its UTC day
    (one atomic upsert): :func:`usage_record` sends it alone, a chat turn's store with its
    other writes in one round trip. ``requests``: what it adds to the row's count of API
    requests (a document's ingestion is none).

    ``at``: when they were spent — for a chat turn, the stored answer's ``created_at``, so that
    the day (and the month its quota counts) is the one the message shows. The day was read
    from the clock after the messages were stored: an answer stored at 23:59:59.999 could be
    counted the next day, or the next month. Default: now (a retrieval; a turn not stored)."""
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    day = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return (
        """
        INSERT INTO conversations_usagedaily
            (tenant_id, day, bot_id, api_key_id, requests,
             prompt_tokens, completion_tokens, embedding_tokens)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (tenant_id, day, bot_id, api_key_id) DO UPDATE SET
            requests = conversations_usagedaily.requests + EXCLUDED.requests,
            prompt_tokens = conversations_usagedaily.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens =
                conversations_usagedaily.completion_tokens + EXCLUDED.completion_tokens,
            embedding_tokens =
                conversations_usagedaily.embedding_tokens + EXCLUDED.embedding_tokens
        """,
        [
            tenant_id,
            day,
            bot_id,
            api_key_id,
            requests,
            prompt_tokens,
            completion_tokens,
            embedding_tokens,
        ],
    )


def _sent(statement: Callable[P, tuple[str, list[Any]]]) -> Callable[P, None]:
    """A function that sends the statement ``statement`` makes, with ``statement``'s arguments."""

    def send(*args: P.args, **kwargs: P.kwargs) -> None:
        with connection.cursor() as cursor:
            cursor.execute(*statement(*args, **kwargs))

    return send


# Add one request's tokens to the usage roll-up now (:func:`usage_sql`'s arguments).
usage_record = _sent(usage_sql)

"""Writes for conversations; usage roll-up and the monthly quota."""

from __future__ import annotations

import datetime as dt
import math
import uuid

from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce

from chatbot_site.errors import QuotaExceeded
from conversations.models import Conversation, UsageDaily
from tenants.models import Tenant
from tenants.services import Actor, audit_record


@transaction.atomic
def conversation_delete(*, tenant: Tenant, actor: Actor, conversation: Conversation) -> None:
    """Its row is locked first, so that a turn still being answered either stores its messages
    before them all are deleted or finds the conversation gone (``chat._store``): a message
    written between the two would have failed the deletion (a 500)."""
    locked = Conversation.objects.for_tenant(tenant).select_for_update().filter(pk=conversation.pk)
    if not list(locked.values_list("pk", flat=True)):
        return  # deleted meanwhile
    audit_record(tenant=tenant, actor=actor, action="conversation.delete", target=conversation)
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


def quota_check(*, tenant: Tenant) -> None:
    """Raise ``429 quota_exceeded`` when the tenant's monthly token quota is used up. Chat calls
    this before any LLM call; one indexed aggregate over at most 31 days x bots x keys rows."""
    if tenant.monthly_token_quota is None:
        return
    used = tokens_used_this_month(tenant=tenant)
    if used >= tenant.monthly_token_quota:
        now = dt.datetime.now(dt.UTC)
        resets = dt.datetime.combine(next_month_start(now.date()), dt.time.min, dt.UTC)
        raise QuotaExceeded(
            "The monthly token quota is used up.",
            details={
                "quota": tenant.monthly_token_quota,
                "used": used,
                "resets_at": resets.isoformat().replace("+00:00", "Z"),
            },
            headers={"Retry-After": str(math.ceil((resets - now).total_seconds()))},
        )


def usage_record(
    *,
    tenant: Tenant,
    bot_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    embedding_tokens: int = 0,
    day: dt.date | None = None,
) -> None:
    """Add one request's tokens to the day's row (one atomic upsert)."""
    from django.db import connection

    day = day or dt.datetime.now(dt.UTC).date()
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

"""Writes for scopes and bots, and the lookup of the bot a key may chat with."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from bots.models import Bot, Scope
from chatbot_site.database import key_share, links_lock, without_statement_timeout
from chatbot_site.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from chatbot_site.lookups import Lookup
from tenants.models import ApiKey, Tenant
from tenants.services import (
    Actor,
    apply_changes,
    audit_record,
    full_clean_or_raise,
    save_or_conflict,
    update_audited,
)


@transaction.atomic
def scope_create(*, tenant: Tenant, actor: Actor, name: str, **fields: Any) -> Scope:
    scope = Scope(tenant=tenant, name=name, **fields)
    full_clean_or_raise(scope, exclude=["tenant"], validate_unique=False)
    save_or_conflict(scope, conflict=f"A scope named {name!r} already exists.")
    audit_record(
        tenant=tenant,
        actor=actor,
        action="scope.create",
        target=scope,
        changes={"name": name, **fields},
    )
    return scope


def scope_kept(tenant: Tenant, scope: Scope | None) -> None:
    """The bot's new scope, share-locked until the transaction ends (:func:`key_share`), or
    ``400`` if another request deleted it since it was looked up. Its links are locked first
    (:func:`links_lock`): a change to it by a key limited to other bots (allowed while only its
    bots use it) finishes first, or waits and sees this. Every write that gives a bot a scope
    calls this, the staff admin's too (``bots.admin``: it saved the bot without the lock)."""
    if scope is None:
        return
    links_lock(Scope, [scope.pk], shared=False)
    if not key_share(Scope, tenant.pk, [scope.pk]):
        raise ValidationFailed(details={"scope_id": ["Scope not found."]})


@transaction.atomic
def bot_create(
    *,
    tenant: Tenant,
    actor: Actor,
    name: str,
    scope: Scope | None = None,
    audit_extra: dict[str, Any] | None = None,
    **fields: Any,
) -> Bot:
    if scope is not None and scope.tenant_id != tenant.pk:
        raise ValueError("scope belongs to another tenant")  # callers pass tenant-scoped objects
    scope_kept(tenant, scope)
    bot = Bot(tenant=tenant, name=name, scope=scope, **fields)
    full_clean_or_raise(bot, exclude=["tenant", "scope"], validate_unique=False)
    save_or_conflict(bot, conflict=f"A bot named {name!r} already exists.")
    audit_record(
        tenant=tenant,
        actor=actor,
        action="bot.create",
        target=bot,
        changes={
            "name": name,
            "scope_id": scope.pk if scope else None,
            **fields,
            **(audit_extra or {}),
        },
    )
    return bot


@transaction.atomic
def scope_update(*, tenant: Tenant, actor: Actor, scope: Scope, changes: dict[str, Any]) -> Scope:
    update_audited(
        tenant=tenant,
        actor=actor,
        instance=scope,
        changes=changes,
        action="scope.update",
        conflict=f"A scope named {changes.get('name', scope.name)!r} already exists.",
    )
    return scope


@transaction.atomic
def scope_delete(*, tenant: Tenant, actor: Actor, scope: Scope) -> None:
    """Refused while bots use it. Its row is locked first: a bot given the scope meanwhile
    share-locks it (:func:`scope_kept`), so the check below either waits for that bot and
    sees it, or the bot waits and finds the scope gone (a bot committed between the check and
    the delete failed the deletion at commit, and a bot given a scope being deleted failed
    itself: 500s)."""
    if not Scope.objects.for_tenant(tenant).select_for_update().filter(pk=scope.pk):
        return  # deleted meanwhile by another request
    in_use = list(
        Bot.objects.for_tenant(tenant).filter(scope=scope).values_list("name", flat=True)[:5]
    )
    if in_use:
        raise Conflict(
            "The scope is used by bots; give them another scope first.",
            details={"bots": in_use},
        )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="scope.delete",
        target=scope,
        changes={"name": scope.name},
    )
    scope.delete()


@transaction.atomic
def bot_update(
    *, tenant: Tenant, actor: Actor, bot: Bot, changes: dict[str, Any]
) -> tuple[Bot, list[str]]:
    scope = changes.get("scope")
    if scope is not None and scope.tenant_id != tenant.pk:
        raise ValueError("scope belongs to another tenant")
    fields = apply_changes(bot, changes)
    if "scope" in fields:
        scope_kept(tenant, scope)
    if fields:
        full_clean_or_raise(bot, exclude=["tenant", "scope"], validate_unique=False)
        save_or_conflict(
            bot,
            conflict=f"A bot named {bot.name!r} already exists.",
            update_fields=[*fields, "updated_at"],
        )
    return bot, fields


@transaction.atomic
def bot_delete(*, tenant: Tenant, actor: Actor, bot: Bot) -> None:
    """The bot and its conversations; not bound by ``DB_STATEMENT_TIMEOUT_SECONDS`` (their
    messages go in one statement). Its row is locked first, so that a turn being stored
    (``conversations.chat._store`` share-locks it) either commits before the conversations are
    collected, and they go with the rest, or finds the bot gone and stores none."""
    without_statement_timeout()
    if not list(
        Bot.objects.for_tenant(tenant)
        .select_for_update()
        .filter(pk=bot.pk)
        .values_list("pk", flat=True)
    ):
        raise NotFound("Bot not found.")  # deleted meanwhile by another request
    audit_record(
        tenant=tenant, actor=actor, action="bot.delete", target=bot, changes={"name": bot.name}
    )
    bot.delete()


# Every chat turn runs it: its SQL is written once (chatbot_site.lookups).
BOT_BY_ID: Lookup[Bot] = Lookup(Bot, 't0."tenant_id" = %s AND t0."id" = %s', related=("scope",))


def bot_for_key(*, tenant: Tenant, api_key: ApiKey, bot_id: Any) -> Bot:
    """The bot a key may talk to: this tenant's, in the key's ``bot_ids`` allow-list if it has
    one, and active. Another tenant's bot, a bot outside the allow-list and a missing bot are the
    same ``404``; an inactive bot is ``403``."""
    try:
        pk = uuid.UUID(str(bot_id))
    except ValueError:
        raise NotFound("Bot not found.") from None
    if api_key.bot_ids and pk not in set(api_key.bot_ids):
        raise NotFound("Bot not found.")
    bot = BOT_BY_ID.get(tenant.pk, pk)
    if bot is None:
        raise NotFound("Bot not found.")
    if (refused := bot_refusal(api_key=api_key, bot_id=pk, is_active=bot.is_active)) is not None:
        raise refused
    return bot


def bot_refusal(
    *, api_key: ApiKey, bot_id: uuid.UUID, is_active: bool | None
) -> NotFound | PermissionDenied | None:
    """Why ``api_key`` may not chat with its tenant's bot ``bot_id`` (``is_active`` None: there
    is no such bot), or None: :func:`bot_for_key`'s rule, also for a stream under way."""
    if is_active is None or (api_key.bot_ids and bot_id not in set(api_key.bot_ids)):
        return NotFound("Bot not found.")
    if not is_active:
        return PermissionDenied("This bot is not active.")
    return None

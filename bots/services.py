"""Writes for scopes and bots. (The admin API in issue 3 adds update/delete.)"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from bots.models import Bot, Scope
from chatbot_site.errors import Conflict
from tenants.models import Tenant
from tenants.services import Actor, audit_record, full_clean_or_raise


@transaction.atomic
def scope_create(*, tenant: Tenant, actor: Actor, name: str, **fields: Any) -> Scope:
    scope = Scope(tenant=tenant, name=name, **fields)
    full_clean_or_raise(scope, exclude=["tenant"], validate_unique=False)
    try:
        with transaction.atomic():
            scope.save()
    except IntegrityError as exc:
        raise Conflict(f"A scope named {name!r} already exists.") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="scope.create",
        target=scope,
        changes={"name": name, **fields},
    )
    return scope


@transaction.atomic
def bot_create(
    *, tenant: Tenant, actor: Actor, name: str, scope: Scope | None = None, **fields: Any
) -> Bot:
    if scope is not None and scope.tenant_id != tenant.pk:
        raise ValueError("scope belongs to another tenant")  # callers pass tenant-scoped objects
    bot = Bot(tenant=tenant, name=name, scope=scope, **fields)
    full_clean_or_raise(bot, exclude=["tenant", "scope"], validate_unique=False)
    try:
        with transaction.atomic():
            bot.save()
    except IntegrityError as exc:
        raise Conflict(f"A bot named {name!r} already exists.") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="bot.create",
        target=bot,
        changes={"name": name, "scope_id": scope.pk if scope else None, **fields},
    )
    return bot

"""Writes for tenants, API keys and the audit log."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model

from chatbot_site.errors import Conflict, ValidationFailed
from tenants.keys import generate_key
from tenants.models import ActorType, ApiKey, AuditLog, Role, Tenant

log = structlog.get_logger(__name__)

# Never written to the audit log, whatever the caller passes.
SECRET_FIELDS = frozenset({"api_key", "key_hash", "secret", "password", "token"})


@dataclass(frozen=True)
class Actor:
    """Who is acting: an API key, a staff user or the system (command line, worker)."""

    type: str
    id: str = ""
    label: str = ""
    ip: str | None = None
    request_id: str = ""

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        request_id = structlog.contextvars.get_contextvars().get("request_id") or ""
        return cls(type=ActorType.SYSTEM, label=label, request_id=request_id)


def _validation_details(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            field: [str(m) for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"non_field_errors": [str(m) for m in exc.messages]}


def full_clean_or_raise(
    instance: Model, *, exclude: Iterable[str] = (), validate_unique: bool = True
) -> None:
    try:
        instance.full_clean(
            exclude=list(exclude),
            validate_unique=validate_unique,
            validate_constraints=validate_unique,
        )
    except DjangoValidationError as exc:
        raise ValidationFailed(details=_validation_details(exc)) from exc


def audit_record(
    *,
    tenant: Tenant,
    actor: Actor,
    action: str,
    target: Model | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one audit entry. ``changes`` holds changed field names → new values; secret
    fields are dropped here, whatever the caller passed."""
    clean = {k: v for k, v in (changes or {}).items() if k not in SECRET_FIELDS}
    entry = AuditLog(
        tenant=tenant,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        changes=_jsonable(clean),
        ip=actor.ip,
        request_id=actor.request_id,
    )
    entry.save()
    return entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # As every timestamp the API shows (the key's own expires_at among them): in UTC, "Z".
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", actor: Actor) -> Tenant:
    tenant = Tenant(
        slug=slug,
        name=name or slug,
        default_rate_limit_per_minute=settings.TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE,
    )
    # Uniqueness is left to the database: a race between two creates is a 409, not a 500.
    full_clean_or_raise(tenant, validate_unique=False)
    save_or_conflict(tenant, conflict=f"A tenant with slug {slug!r} already exists.")
    audit_record(
        tenant=tenant,
        actor=actor,
        action="tenant.create",
        target=tenant,
        changes={"slug": tenant.slug, "name": tenant.name},
    )
    log.info("tenant_created", tenant_id=str(tenant.id), slug=tenant.slug)
    return tenant


# Sent by name: the task is knowledge's (``knowledge.tasks.requeue_over_quota``, on the
# maintenance queue by CELERY_TASK_ROUTES) and knowledge depends on tenants, not the reverse.
REQUEUE_OVER_QUOTA_TASK = "knowledge.requeue_over_quota"
# A staff user's save waits for the publish: two quick tries (knowledge.tasks.PUBLISH_RETRY's).
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def tenant_quota_changed(*, tenant: Tenant, actor: Actor) -> None:
    """The tenant's monthly quota (or whether it is active) is changed in the transaction
    under way: once it commits, its documents that failed ``quota_exceeded`` are queued again
    if the quota has room (``knowledge.intake.requeue_over_quota`` for this tenant). Before,
    they waited for celery beat's sweep (``INGEST_QUOTA_RETRY_SECONDS``, 15 minutes), which
    stays for the writers that do not call this (a shell, SQL). A broker that cannot take the
    task is logged, not raised: the sweep queues them in its time. ``actor`` (the staff user
    who saved) is who each re-queue's ``document.reingest`` audit entry names: before, it named
    celery beat's sweep, which had not acted."""
    tenant_id = str(tenant.pk)
    sent = actor_as_dict(actor)
    transaction.on_commit(lambda: _send_quota_requeue(tenant_id, sent))


def actor_as_dict(actor: Actor) -> dict[str, Any]:
    """``actor`` as a task's JSON argument (:func:`actor_from_dict` reads it back)."""
    return {
        "type": actor.type,
        "id": actor.id,
        "label": actor.label,
        "ip": actor.ip,
        "request_id": actor.request_id,
    }


def actor_from_dict(data: Mapping[str, Any]) -> Actor:
    return Actor(
        type=str(data["type"]),
        id=str(data.get("id") or ""),
        label=str(data.get("label") or ""),
        ip=data.get("ip") or None,
        request_id=str(data.get("request_id") or ""),
    )


def _send_quota_requeue(tenant_id: str, actor: dict[str, Any]) -> None:
    from celery import current_app

    try:
        current_app.send_task(
            REQUEUE_OVER_QUOTA_TASK,
            kwargs={"tenant_id": tenant_id, "actor": actor},
            retry_policy=_PUBLISH_RETRY,
        )
    except Exception as exc:  # kombu's OperationalError, redis' ConnectionError, ...
        log.warning("quota_requeue_enqueue_failed", tenant_id=tenant_id, error=type(exc).__name__)


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    actor: Actor,
    role: str,
    name: str = "",
    bot_ids: list[uuid.UUID] | None = None,
    rate_limit_per_minute: int | None = None,
    expires_at: dt.datetime | None = None,
    limited_by: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is never retrievable again.
    ``limited_by``: the bot-limited key creating it, whose rate budget (:func:`rate_budget_of`)
    its requests count against too; ``None``: a tenant-wide actor's key, with a limit of its
    own."""
    if role not in Role.values:
        raise ValidationFailed(details={"role": [f"Must be one of {', '.join(Role.values)}."]})
    rate_budget = None if limited_by is None else rate_budget_of(tenant=tenant, key=limited_by)
    new = generate_key()
    key = ApiKey(
        tenant=tenant,
        name=name,
        prefix=new.prefix,
        key_hash=new.hash,
        role=role,
        bot_ids=list(bot_ids or []),
        rate_limit_per_minute=rate_limit_per_minute,
        expires_at=expires_at,
        rate_budget_id=rate_budget,
    )
    full_clean_or_raise(key)
    key.save()
    audit_record(
        tenant=tenant,
        actor=actor,
        action="api_key.create",
        target=key,
        changes={
            "name": name,
            "role": role,
            "prefix": key.prefix,
            "bot_ids": key.bot_ids,
            "rate_limit_per_minute": rate_limit_per_minute,
            "expires_at": expires_at,
            # (not the other key's id: a bot-limited key reading the entry may not manage it)
            **({"rate_limit_shared": True} if rate_budget is not None else {}),
        },
    )
    log.info("api_key_created", tenant_id=str(tenant.id), api_key_id=str(key.id), role=role)
    return key, new.plaintext


def rate_budget_of(*, tenant: Tenant, key: ApiKey) -> uuid.UUID:
    """The key whose bucket ``key``'s requests take from besides their own: the one it shares,
    else itself. ``key``'s row is locked until the transaction ends: a change of its budget
    (:func:`api_key_update`) is waited for and seen (a key it made meanwhile joined the budget
    it was leaving, and kept it)."""
    locked = ApiKey.objects.for_tenant(tenant).select_for_update().get(pk=key.pk)
    return locked.rate_budget_id or locked.pk


def _keys_made_by(
    *, tenant: Tenant, makers: Iterable[uuid.UUID], budget: uuid.UUID
) -> list[ApiKey]:
    """The keys ``makers`` created (their ``api_key.create`` entries) that share ``budget``."""
    made = AuditLog.objects.for_tenant(tenant).filter(
        action="api_key.create",
        actor_type=ActorType.API_KEY,
        actor_id__in=[str(pk) for pk in makers],
    )
    ids = list(made.values_list("target_id", flat=True))
    return list(ApiKey.objects.for_tenant(tenant).filter(pk__in=ids, rate_budget_id=budget))


def _followers(*, tenant: Tenant, key: ApiKey, budget: uuid.UUID) -> list[ApiKey]:
    """The keys whose budget goes where ``key``'s goes, ``budget`` being the one it leaves:
    every key sharing it if it is ``key``'s own (none may be left sharing a key that shares
    another's: one hit takes from two buckets, not three); else the keys ``key`` created, and
    the keys they created in turn, that share it too."""
    if budget == key.pk:
        return list(ApiKey.objects.for_tenant(tenant).filter(rate_budget_id=key.pk))
    found: list[ApiKey] = []
    makers = [key.pk]
    while makers:
        made = _keys_made_by(tenant=tenant, makers=makers, budget=budget)
        found.extend(made)
        makers = [k.pk for k in made]
    return found


def apply_changes(instance: Model, changes: Mapping[str, Any]) -> list[str]:
    """Set the attributes that differ; return their names (for update_fields and the audit)."""
    changed = []
    for name, value in changes.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed.append(name)
    return changed


def save_or_conflict(
    instance: Model, *, conflict: str, update_fields: list[str] | None = None
) -> None:
    """Save; a unique-constraint violation (a name taken, a race) is ``409 conflict``."""
    try:
        with transaction.atomic():
            instance.save(update_fields=update_fields)
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def update_audited(
    *,
    tenant: Tenant,
    actor: Actor,
    instance: Model,
    changes: Mapping[str, Any],
    action: str,
    conflict: str = "The change conflicts with another object.",
    exclude: Iterable[str] = ("tenant",),
) -> list[str]:
    """Apply ``changes``, validate, save only what changed, audit it; returns the fields."""
    fields = apply_changes(instance, changes)
    if fields:
        full_clean_or_raise(instance, exclude=exclude, validate_unique=False)
        save_or_conflict(instance, conflict=conflict, update_fields=[*fields, "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action=action,
            target=instance,
            changes={f: getattr(instance, f) for f in fields},
        )
    return fields


@transaction.atomic
def api_key_update(
    *,
    tenant: Tenant,
    actor: Actor,
    key: ApiKey,
    changes: Mapping[str, Any],
    limited_by: ApiKey | None = None,
) -> ApiKey:
    """Change a key. ``limited_by``: the bot-limited key making the change, if one is.

    A new ``rate_limit_per_minute`` puts the key's requests in the budget of whoever set it. Set
    by a bot-limited key (not the key itself), the key joins that key's budget, as a key it
    creates does: a limit it gives is taken from its own, not added to it (the key it created
    stays in it; a key it manages that had a budget of its own is drawn into it). Set by a
    tenant-wide actor (a key without ``bot_ids``, staff, a command: ``limited_by=None``), the
    key gets a budget of its own: a limit given deliberately is the key's, not a share of its
    creator's (it stayed a share, so raising it raised nothing). The keys that shared the
    budget it leaves because of it (the keys it created, and those they created; every key
    sharing its own) go with it, each audited."""
    allowed = {"name", "role", "bot_ids", "rate_limit_per_minute", "expires_at"}
    if unknown := set(changes) - allowed:
        raise ValidationFailed(details={f: ["This field cannot be changed."] for f in unknown})
    if key.revoked_at is not None:
        raise Conflict("A revoked key cannot be changed.")
    fields = apply_changes(key, changes)
    if not fields:
        return key
    record = {f: getattr(key, f) for f in fields}
    followers: list[ApiKey] = []
    if "rate_limit_per_minute" in fields and (limited_by is None or limited_by.pk != key.pk):
        # Both rows locked in one statement, in one order (two keys' changes to each other
        # waited for each other the other way round); the budgets read from the locked rows.
        pks = {key.pk} | ({limited_by.pk} if limited_by is not None else set())
        rows = ApiKey.objects.for_tenant(tenant).select_for_update().filter(pk__in=pks)
        locked = {row.pk: row for row in rows.order_by("pk")}
        leaving = locked[key.pk].rate_budget_id or key.pk
        if limited_by is None:
            joining = key.pk
        else:
            joining = locked[limited_by.pk].rate_budget_id or limited_by.pk
        if joining != leaving:
            followers = _followers(tenant=tenant, key=key, budget=leaving)
            key.rate_budget_id = None if joining == key.pk else joining
            fields.append("rate_budget")
            record["rate_limit_shared"] = key.rate_budget_id is not None
    full_clean_or_raise(key, exclude=("tenant",), validate_unique=False)
    save_or_conflict(
        key,
        conflict="The change conflicts with another object.",
        update_fields=[*fields, "updated_at"],
    )
    audit_record(tenant=tenant, actor=actor, action="api_key.update", target=key, changes=record)
    for follower in followers:
        follower.rate_budget_id = key.rate_budget_id or key.pk
        follower.save(update_fields=["rate_budget", "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="api_key.update",
            target=follower,
            # (not the keys' ids: a bot-limited key reading the entry may not manage them)
            changes={"rate_limit_shared": True, "rate_budget": "moved with its creator"},
        )
    if followers or "rate_budget" in fields:
        log.info(
            "api_key_rate_budget_moved",
            api_key_id=str(key.id),
            shared=key.rate_budget_id is not None,
            followers=len(followers),
        )
    return key


@transaction.atomic
def api_key_revoke(*, tenant: Tenant, actor: Actor, key: ApiKey) -> ApiKey:
    """Revoke at once: the key and every JWT issued for it fail from the next request on."""
    if key.revoked_at is None:
        from django.utils import timezone

        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="api_key.revoke",
            target=key,
            changes={"prefix": key.prefix},
        )
        log.info("api_key_revoked", api_key_id=str(key.id))
    return key

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
    rate_budget: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is never retrievable again.
    ``rate_budget``: the key whose rate limit its requests count against too."""
    if role not in Role.values:
        raise ValidationFailed(details={"role": [f"Must be one of {', '.join(Role.values)}."]})
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
        rate_budget=rate_budget,
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
    *, tenant: Tenant, actor: Actor, key: ApiKey, changes: Mapping[str, Any]
) -> ApiKey:
    allowed = {"name", "role", "bot_ids", "rate_limit_per_minute", "expires_at"}
    if unknown := set(changes) - allowed:
        raise ValidationFailed(details={f: ["This field cannot be changed."] for f in unknown})
    if key.revoked_at is not None:
        raise Conflict("A revoked key cannot be changed.")
    update_audited(
        tenant=tenant, actor=actor, instance=key, changes=changes, action="api_key.update"
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

"""Tenants, their API keys and the append-only audit log; the tenant-owned base classes.

Every tenant-owned model inherits :class:`TenantOwned`: its ``objects`` manager refuses
unscoped queries (``Model.objects.for_tenant(tenant)`` is the only way in), ``all_tenants`` is
the greppable escape hatch for the staff admin, migrations and workers that already checked.
A unique ``(tenant_id, id)`` on every tenant-owned table is what the composite, tenant-consistent
foreign keys (:mod:`tenants.db`) point at.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.errors import TenantScopeError


class CreatedAtField(models.DateTimeField):
    """``auto_now_add``, but a time given to a new row is kept. Django put the clock's over it,
    silently: rows made with their ``created_at`` set (tests of lists, of pages across ties,
    of a day's last millisecond) were all stamped now instead. Still a ``DateTimeField`` to
    migrations."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        given = getattr(model_instance, self.attname)
        if add and given is not None:
            return given
        return super().pre_save(model_instance, add)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs


class UpdatedAtField(models.DateTimeField):
    """``auto_now``, but a new row's is its ``created_at``: Django takes the clock once per
    field, so a row just created had an ``updated_at`` some microseconds after its
    ``created_at`` and looked changed since. Still a ``DateTimeField`` to migrations."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        created = getattr(model_instance, "created_at", None)  # (its pre_save ran first)
        if add and created is not None:
            setattr(model_instance, self.attname, created)
            return created
        return super().pre_save(model_instance, add)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs


class BaseModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = CreatedAtField(auto_now_add=True)
    updated_at = UpdatedAtField(auto_now=True)

    class Meta:
        abstract = True


class Tenant(BaseModel):
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    default_rate_limit_per_minute = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)]
    )
    # Tokens (prompt + completion + embedding) per calendar month (UTC); null = unlimited.
    monthly_token_quota = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(default_rate_limit_per_minute__gte=1), name="tenant_rate_limit_positive"
            ),
            models.CheckConstraint(
                condition=Q(monthly_token_quota__isnull=True) | Q(monthly_token_quota__gte=0),
                name="tenant_quota_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A save of some fields moves ``updated_at`` too: it is when the tenant last changed,
        which the re-queue of documents over the quota reads (``knowledge.intake
        .requeue_over_quota``). ``save(update_fields=["monthly_token_quota"])`` in a shell left
        it as it was, and the documents waiting for that quota were never queued again. (Any
        other writer of the quota, ``.update()`` and SQL among them, moves it by a trigger:
        tenants migration 0007.)"""
        fields = kwargs.get("update_fields")
        if fields is not None and fields and "updated_at" not in fields:
            kwargs["update_fields"] = [*fields, "updated_at"]
        super().save(*args, **kwargs)


class TenantScopedManager(models.Manager[Any]):
    """``Model.objects`` for tenant-owned models: fails closed without a tenant."""

    def get_queryset(self) -> models.QuerySet[Any]:
        raise TenantScopeError(f"{self.model.__name__}: use .for_tenant(tenant)")

    def for_tenant(self, tenant: Tenant | uuid.UUID) -> models.QuerySet[Any]:
        tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
        if tenant_id is None:
            raise TenantScopeError(f"{self.model.__name__}: tenant is required")
        return super().get_queryset().filter(tenant_id=tenant_id)


class TenantOwned(BaseModel):
    # Indexed by the (tenant_id, id) unique constraint below, whose prefix it is.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)

    objects: ClassVar[TenantScopedManager] = TenantScopedManager()
    # (no-redef: django-stubs' plugin may see this manager twice, depending on module order;
    # unused-ignore: in the other order it does not)
    all_tenants: ClassVar[models.Manager[Any]] = models.Manager()  # type: ignore[no-redef, unused-ignore]

    class Meta:
        abstract = True
        default_manager_name = "all_tenants"
        base_manager_name = "all_tenants"
        # Target of the tenant-consistent composite foreign keys; also a tenant filter index.
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "id"], name="%(app_label)s_%(class)s_tenant_pk"
            ),
        ]


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    CHAT = "chat", "Chat"


# A key's own settings take the same bounds in the API and in the admin.
KEY_RATE_LIMIT_MAX = 1_000_000  # requests per minute


def validate_key_expiry(value: dt.datetime | None) -> None:
    """A new expiry is in the future: a key is revoked, not made expired."""
    if value is not None and value <= timezone.now():
        raise ValidationError("Must be in the future.")


class ApiKey(TenantOwned):
    """A tenant's API key. Only the public prefix and a SHA-256 of the secret are stored: the
    secret has 256 bits of entropy, so a fast hash is safe and keeps lookups cheap."""

    api_name = "API key"  # in messages to clients ("API key not found.")

    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=10, choices=Role.choices)
    bot_ids = ArrayField(models.UUIDField(), default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The key whose rate limit this key's requests count against too: set when a key limited
    # to some bots creates it, or sets its limit (to that key, or to the one whose limit that
    # key shares), so that the keys it creates share its requests a minute instead of
    # multiplying them; cleared when a tenant-wide actor sets its limit
    # (``tenants.services.api_key_update``). Never a key that shares another's itself.
    rate_budget = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in Role]), name="apikey_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(rate_limit_per_minute__isnull=True) | Q(rate_limit_per_minute__gte=1),
                name="apikey_rate_limit_positive",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="apikey_tenant_created")]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.name or self.role})"

    @property
    def rate_limit_shared(self) -> bool:
        """Its requests count against another key's rate limit too (:attr:`rate_budget`)."""
        return self.rate_budget_id is not None


class ActorType(models.TextChoices):
    API_KEY = "api_key", "API key"
    STAFF = "staff", "Staff user"
    SYSTEM = "system", "System (command line, worker)"


class AppendOnlyError(Exception):
    """Audit log rows are never updated or deleted."""


class AuditLogQuerySet(models.QuerySet["AuditLog"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("audit log entries cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit log entries cannot be deleted")


class AuditLogScopedManager(TenantScopedManager):
    def get_queryset(self) -> models.QuerySet[Any]:
        raise TenantScopeError("AuditLog: use .for_tenant(tenant)")

    def for_tenant(self, tenant: Tenant | uuid.UUID) -> models.QuerySet[Any]:
        tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
        if tenant_id is None:
            raise TenantScopeError("AuditLog: tenant is required")
        return AuditLogQuerySet(self.model, using=self._db).filter(tenant_id=tenant_id)


class AuditLog(models.Model):
    """Who did what, when. Append-only in Python (save/delete/queryset refuse) and in the
    database (a trigger rejects UPDATE and DELETE; see the tenants migration)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", db_index=False)
    created_at = CreatedAtField(auto_now_add=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)

    objects: ClassVar[AuditLogScopedManager] = AuditLogScopedManager()
    all_tenants: ClassVar[models.Manager[AuditLog]] = AuditLogQuerySet.as_manager()

    class Meta:
        default_manager_name = "all_tenants"
        base_manager_name = "all_tenants"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created"),
            models.Index(fields=["tenant", "action", "-created_at"], name="audit_tenant_action"),
            models.Index(fields=["tenant", "target_type", "target_id"], name="audit_tenant_target"),
            # ?actor_id= (what one key or staff user did): without it, a rare actor's entries
            # were found by reading every entry of the tenant, or of every tenant.
            models.Index(fields=["tenant", "actor_id", "-created_at"], name="audit_tenant_actor"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_type__in=[a.value for a in ActorType]),
                name="auditlog_actor_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit log entries cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit log entries cannot be deleted")


class StaffMembership(models.Model):
    """The tenant a staff user (a person signing in to the admin) works for. A tenant staff user
    sees and edits only that tenant's objects; a superuser sees every tenant; a staff user who
    is neither sees nothing (chatbot_site.staff_admin)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_membership"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class UsageDaily(models.Model):
    """Token usage per tenant, UTC day, bot and key: every token the service spends for the
    tenant is added here as it is spent (``tenants.usage.usage_record``), so usage reports and
    quota checks never scan the message or chunk tables. A chat turn and a retrieval carry their
    bot and key; a document's ingestion neither (a dataset serves any bot; no key waits for
    it). Bot and key are plain ids (not foreign keys): usage outlives a deleted bot or key.

    It lived in ``conversations`` until ingestion, in ``knowledge`` (below conversations),
    counted its tokens too; the table kept its name (``conversations`` migration 0005)."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    bot_id = models.UUIDField(null=True, blank=True)
    api_key_id = models.UUIDField(null=True, blank=True)
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    embedding_tokens = models.BigIntegerField(default=0)

    objects: ClassVar[TenantScopedManager] = TenantScopedManager()
    # (no-redef, unused-ignore: as TenantOwned's, depending on the stubs plugin's module order)
    all_tenants: ClassVar[models.Manager[UsageDaily]] = models.Manager()  # type: ignore[no-redef, unused-ignore]

    class Meta:
        db_table = "conversations_usagedaily"
        default_manager_name = "all_tenants"
        base_manager_name = "all_tenants"
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "day", "bot_id", "api_key_id"],
                name="usage_daily_unique",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"

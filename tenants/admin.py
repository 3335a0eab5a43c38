"""Admin for tenants, their API keys, the audit log and staff memberships."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from chatbot_site.staff_admin import (
    StaffModelAdmin,
    TenantConsistentForm,
    TenantScopedAdmin,
    is_superuser,
    staff_actor,
    staff_tenant,
)
from tenants.models import (
    KEY_RATE_LIMIT_MAX,
    ApiKey,
    AuditLog,
    StaffMembership,
    Tenant,
    validate_key_expiry,
)
from tenants.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    audit_record,
    tenant_quota_changed,
)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_field = "pk"
    list_display = ["slug", "name", "is_active", "default_rate_limit_per_minute",
                    "monthly_token_quota", "created_at"]  # fmt: skip
    list_filter = ["is_active", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a tenant's audit log outlives it (PROTECT): deactivate instead

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and {"monthly_token_quota", "is_active"} & set(form.changed_data):
            # Documents refused for the quota are tried again as the save commits (the
            # change view's transaction), not at celery beat's next sweep, 15 minutes on.
            tenant_quota_changed(tenant=obj, actor=staff_actor(request))

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # As manage.py create_tenant (tenant_create): the model's 60 was every new tenant's.
        default = {"default_rate_limit_per_minute": settings.TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE}
        return {**default, **super().get_changeform_initial_data(request)}


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiKeyForm(TenantConsistentForm):
    """The API's bounds: a rate limit up to KEY_RATE_LIMIT_MAX, an expiry in the future (when
    it is set or changed: an expired key can still be renamed)."""

    rate_limit_per_minute = forms.IntegerField(
        min_value=1,
        max_value=KEY_RATE_LIMIT_MAX,
        required=False,
        help_text="Requests per minute; blank: the tenant's default.",
    )

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if "expires_at" in self.changed_data:
            validate_key_expiry(value)
        return value


KEY_EDITABLE = ("name", "rate_limit_per_minute", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Creating a key shows its secret once, on the page after the form; it is never stored.
    Keys are revoked, not deleted (their usage and audit history stay attributable)."""

    audit_name = "api_key"
    form = ApiKeyForm
    list_display = ["name", "prefix", "role", "tenant", "is_revoked", "last_used_at",
                    "expires_at", "created_at"]  # fmt: skip
    list_filter = [RevokedFilter, "role", "created_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["tenant", "name", "role", "rate_limit_per_minute", "expires_at"]
        return [*KEY_EDITABLE, *self.get_readonly_fields(request, obj)]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["tenant", "role", "prefix", "rate_limit_shared", "last_used_at", "revoked_at",
                "created_at"]  # fmt: skip

    @admin.display(boolean=True, description="rate limit shared")
    def rate_limit_shared(self, obj: ApiKey) -> bool:
        return obj.rate_limit_shared

    @admin.display(boolean=True, description="revoked")
    def is_revoked(self, obj: ApiKey) -> bool:
        return obj.revoked_at is not None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A revoked key is read-only, as the API's 409: it was renamed, given another rate
        # limit or expiry here, and audited as api_key.update.
        if obj is not None and obj.revoked_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            # As a PATCH by a key without bot_ids (api_key_update, audited there): a rate
            # limit given here is the key's own, out of the budget it shared with the
            # bot-limited key that created it (it stayed in it, so raising it raised nothing).
            changes = {f: form.cleaned_data[f] for f in form.changed_data if f in KEY_EDITABLE}
            key = ApiKey.all_tenants.select_related("tenant").get(pk=obj.pk)
            api_key_update(tenant=key.tenant, actor=staff_actor(request), key=key, changes=changes)
            obj.__dict__.update({k: v for k, v in key.__dict__.items() if k != "_state"})
            return
        tenant = obj.tenant if is_superuser(request) else staff_tenant(request)
        key, plaintext = api_key_create(
            tenant=tenant,  # type: ignore[arg-type]
            actor=staff_actor(request),
            role=obj.role,
            name=obj.name,
            rate_limit_per_minute=obj.rate_limit_per_minute,
            expires_at=obj.expires_at,
        )
        # The admin goes on with ``obj`` (log entry, response_add): make it the created key.
        obj.__dict__.update({k: v for k, v in key.__dict__.items() if k != "_state"})
        obj._state.adding = False
        obj._plaintext = plaintext

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "key": obj,
            "plaintext": obj._plaintext,
            "opts": self.opts,
        }
        response: HttpResponse = TemplateResponse(request, "staff/api_key_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("tenant"):
            api_key_revoke(tenant=key.tenant, actor=staff_actor(request), key=key)
            revoked += 1
        messages.success(request, f"Revoked {revoked} key(s).")


@admin.register(AuditLog)
class AuditLogAdmin(TenantScopedAdmin):
    read_only = True
    list_display = ["created_at", "action", "actor_type", "actor_label", "target_type",
                    "target_id", "tenant", "ip"]  # fmt: skip
    list_filter = ["actor_type", "action", "target_type", "created_at"]
    search_fields = ["action", "actor_label", "target_id", "request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]


@admin.register(StaffMembership)
class StaffMembershipAdmin(StaffModelAdmin):
    """Which tenant each staff user works for: superusers only (Django's own permissions)."""

    list_display = ["user", "tenant", "created_at"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "tenant__slug"]

    # Who may sign in to a tenant's admin is in that tenant's audit log, as every other change
    # made here: a membership given, moved or taken away left no entry. A membership moved to
    # another tenant is taken away from the first (its log does not name the second) and
    # given in the second.
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change and not form.has_changed():
            return
        before = form.initial.get("tenant") if change else None
        super().save_model(request, obj, form, change)
        user = {"user": obj.user.get_username()}
        if before is not None and str(before) != str(obj.tenant_id):
            self._audit(request, obj, Tenant.objects.get(pk=before), "delete", user)
        moved_in = not change or str(before) != str(obj.tenant_id)
        self._audit(request, obj, obj.tenant, "create" if moved_in else "update", user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit(request, obj, obj.tenant, "delete", {"user": obj.user.get_username()})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset.select_related("user", "tenant"):
            self.delete_model(request, obj)

    @staticmethod
    def _audit(request: HttpRequest, obj: Any, tenant: Tenant, verb: str, changes: Any) -> None:
        audit_record(tenant=tenant, actor=staff_actor(request),
                     action=f"staff_membership.{verb}", target=obj, changes=changes)  # fmt: skip

"""The base of every tenant-owned model's admin: scoped to the staff user's tenant, audited.

- A superuser sees every tenant; a staff user with a :class:`~tenants.models.StaffMembership`
  sees only that tenant's rows; any other staff user sees nothing (fails closed).
- Querysets, foreign-key and filter choices, actions and object URLs are all scoped: another
  tenant's object id in a URL is a 404, not a redirect that says it exists.
- A form cannot point one tenant's object at another tenant's (checked in ``clean``), and an
  object's tenant cannot change once it is created (read-only on its change page).
- Every add, change and delete is written to the tenant's audit log, the actor being the staff
  user, exactly as API actions are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.db import DataError, models, router, transaction
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from chatbot_site.errors import ApplicationError
from tenants.api_base import client_ip
from tenants.models import ActorType, Tenant
from tenants.services import Actor, audit_record
from tenants.staff import staff_tenant_of

log = structlog.get_logger(__name__)


def staff_tenant(request: HttpRequest) -> Tenant | None:
    """The request user's tenant (cached on the request)."""
    if not hasattr(request, "_staff_tenant"):
        request._staff_tenant = staff_tenant_of(request.user)  # type: ignore[attr-defined]
    return request._staff_tenant  # type: ignore[attr-defined]


def is_superuser(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


def may_see(request: HttpRequest) -> bool:
    return is_superuser(request) or staff_tenant(request) is not None


def staff_actor(request: HttpRequest) -> Actor:
    user = request.user
    request_id = getattr(request, "request_id", "")  # RequestIdMiddleware
    return Actor(
        type=ActorType.STAFF,
        id=str(user.pk),
        label=user.get_username(),
        ip=client_ip(request),
        request_id=str(request_id),
    )


def scope_to_tenant(
    request: HttpRequest, queryset: models.QuerySet[Any], field: str = "tenant"
) -> models.QuerySet[Any]:
    """``queryset`` limited to what the request's staff user may see."""
    if is_superuser(request):
        return queryset
    tenant = staff_tenant(request)
    if tenant is None:
        return queryset.none()
    return queryset.filter(**{field: tenant.pk})


def admin_link(obj: Any) -> str:
    """A link to ``obj``'s admin page (the viewer's permissions decide what it shows)."""
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj)


def admin_links(objects: Any) -> str:
    return format_html_join(", ", "{}", ((admin_link(o),) for o in objects)) or "—"


def _tenant_field(model: type[models.Model]) -> str | None:
    if model is Tenant:
        return "pk"
    names = {f.name for f in model._meta.get_fields()}
    return "tenant" if "tenant" in names else None


class AppliedWhenGiven(admin.ListFilter):
    """A list filter that is kept, and so applied, whenever its parameter is in the URL.

    Django leaves out a filter with too few choices to be worth showing, after it has taken the
    filter's parameter out of the query: ``?dataset__id__exact=<a dataset without documents>``
    (one dataset in use) then listed every document, the other dataset's included."""

    def has_output(self) -> bool:
        return bool(self.used_parameters) or super().has_output()


class RelatedOnlyFilter(AppliedWhenGiven, admin.RelatedOnlyFieldListFilter):
    """The related objects some row points to (in the staff user's scope, as the rows are)."""


class TenantConsistentForm(forms.ModelForm):
    """Refuses a related object of another tenant (a superuser picks from every tenant)."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        tenant = data.get("tenant")
        tenant_id = tenant.pk if tenant is not None else getattr(self.instance, "tenant_id", None)
        for name, value in list(data.items()):
            if name == "tenant" or tenant_id is None:
                continue
            related = value if isinstance(value, list | tuple | models.QuerySet) else [value]
            for item in related:
                if getattr(item, "tenant_id", tenant_id) != tenant_id:
                    self.add_error(name, "This belongs to another tenant.")
                    break
        return data


class StaffModelAdmin(admin.ModelAdmin):
    """What every admin of the site shares: TenantScopedAdmin and StaffMembershipAdmin derive
    from it, and :meth:`StaffAdminSite.register` mixes it into Django's own (users, groups,
    TOTP devices)."""

    # Lookups that the site's own links put in this list's URL besides its filters' (the
    # "chunks of this document" link): the only others a URL may ask for.
    linked_lookups: ClassVar[tuple[str, ...]] = ()

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        # Django allows any lookup on the model's own fields: ``?name__regex=(``, ``?tags=x``,
        # ``?ip=notanip`` or ``?created_at__year=0`` reached the database (a 500). Only what the
        # list's filters, date hierarchy and links ask for is allowed; anything else is a 400.
        return lookup in self.allowed_lookups(request)

    def allowed_lookups(self, request: Any) -> set[str]:
        allowed = set(self.linked_lookups)
        for item in self.get_list_filter(request) if request else self.list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                allowed.add(str(item.parameter_name))
                continue
            path = item[0] if isinstance(item, list | tuple) else item
            if not isinstance(path, str):
                continue
            allowed.update(f"{path}{lookup}" for lookup in FIELD_FILTER_LOOKUPS)
            field = get_fields_from_path(self.model, path)[-1]
            if (target := getattr(field, "target_field", None)) is not None:  # a relation
                allowed.add(f"{path}__{target.name}__exact")
        if self.date_hierarchy:
            allowed.update(f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day"))
        return allowed

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        # An allowed lookup with a value that Python or the database cannot take (a year past
        # datetime's range in the date hierarchy: OverflowError, which Django does not catch)
        # is Django's "incorrect lookup" page, not a 500. (The savepoint keeps an outer
        # transaction usable after a DataError.)
        try:
            with transaction.atomic(using=router.db_for_read(self.model)):
                return super().get_changelist_instance(request)
        except (DataError, OverflowError) as exc:
            log.info("admin_lookup_refused", model=self.opts.label, error=type(exc).__name__)
            raise IncorrectLookupParameters(exc) from exc

    def response_action(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> Any:
        # An id the primary key cannot take (``_selected_action=notauuid``, or empty) was a 500
        # (ValidationError from ``pk__in``); it selects nothing, and an action on nothing is
        # Django's "Items must be selected" message.
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        ids = [value for value in selected if _is_value_of(self.opts.pk, value)]
        if len(ids) < len(selected):
            post = request.POST.copy()
            post.setlist(helpers.ACTION_CHECKBOX_NAME, ids)
            request.POST = post  # type: ignore[assignment]
        return super().response_action(request, queryset)


# What Django's field list filters put in a URL: ``field`` (all values), ``field__exact``
# (booleans, choices), ``field__gte`` and ``field__lt`` (dates), ``field__isnull``.
FIELD_FILTER_LOOKUPS = ("", "__exact", "__gte", "__lt", "__isnull")


def _is_value_of(field: Any, value: str) -> bool:
    try:
        field.to_python(value)
    except ValidationError:
        return False
    return True


class ShallowPaginator(Paginator):
    """Pages the first ``ADMIN_LIST_MAX_ROWS`` rows of a list; a page past them is the last of
    those. A page's OFFSET reads (and, unless an index gives the order, sorts) every row before
    it: page 2,000 of 200,000 chunks took 3.2 s, a sort of the whole table spilled to disk, and
    a crawler or an impatient click on the last page repeats it. Deeper rows are reached by
    narrowing the list (a filter, a search, a document's or conversation's link). The count
    stays exact (an index-only COUNT: 20-40 ms at 200,000 rows)."""

    @cached_property
    def num_pages(self) -> int:
        shallow = max(1, settings.ADMIN_LIST_MAX_ROWS // self.per_page)
        return min(super().num_pages, shallow)

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            if int(number) > 1:
                return self.num_pages
            raise


class TenantScopedAdmin(StaffModelAdmin):
    """Admin of a tenant-owned model. ``read_only`` models can be looked at, never changed."""

    form = TenantConsistentForm
    paginator = ShallowPaginator
    read_only = False
    tenant_field = "tenant"
    # Deleting one of these takes many rows with it (documents, chunks; conversations, messages),
    # which the delete service removes and which may be read-only here: the confirmation page
    # names the objects and counts those rows instead of listing (and permission-checking) each
    # one. Model label → the lookup from it to the deleted objects; empty: Django's own page.
    summarize_deletion: ClassVar[dict[str, str]] = {}
    audit_name = ""  # the audit log's name for the model (as the API writes it); default: model

    # --- what the user may see ---------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return scope_to_tenant(request, super().get_queryset(request), self.tenant_field)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:  # absent, malformed or another tenant's: all the same 404
            raise Http404("No such object.")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_see(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_see(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return not self.read_only and may_see(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.read_only and may_see(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.read_only and may_see(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # The tenant is set at creation: a superuser who moved a bot, dataset or scope to
        # another tenant left its dependants with the old one (an IntegrityError, a 500).
        if obj is not None and self.tenant_field == "tenant" and "tenant" not in fields:
            fields.append("tenant")
        return fields

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if related is Tenant and not is_superuser(request):
            tenant = staff_tenant(request)
            kwargs["queryset"] = Tenant.objects.filter(pk__in=[tenant.pk] if tenant else [])
            kwargs["initial"] = tenant
            kwargs["empty_label"] = None
        elif (field := _tenant_field(related)) is not None:
            kwargs["queryset"] = scope_to_tenant(request, related._default_manager.all(), field)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if (field := _tenant_field(related)) is not None:
            kwargs["queryset"] = scope_to_tenant(request, related._default_manager.all(), field)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    # --- writes, audited -----------------------------------------------------------------
    def audit_tenant(self, obj: Any) -> Tenant:
        return obj if isinstance(obj, Tenant) else obj.tenant

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not is_superuser(request) and not isinstance(obj, Tenant):
            obj.tenant = staff_tenant(request)
        concrete = {f.name for f in obj._meta.concrete_fields}
        changes = {
            f: obj.serializable_value(f)
            for f in form.changed_data  # (array fields report "changed" when only re-typed)
            if f in concrete and (not change or form.initial.get(f) != obj.serializable_value(f))
        }
        if change and not changes:
            # A change page saved as it was: nothing to write, as a PATCH that changes nothing
            # (it wrote an audit entry with no changes and moved updated_at).
            return
        super().save_model(request, obj, form, change)
        action = f"{self.audit_name or obj._meta.model_name}.{'update' if change else 'create'}"
        audit_record(
            tenant=self.audit_tenant(obj),
            actor=staff_actor(request),
            action=action,
            target=obj,
            changes=changes,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        if not self.summarize_deletion:
            return super().get_deleted_objects(objs, request)
        objs = list(objs)
        names = [format_html("{}: {}", self.opts.verbose_name, admin_link(obj)) for obj in objs]
        counts = {self.opts.verbose_name_plural: len(objs)}
        for label, lookup in self.summarize_deletion.items():
            model = apps.get_model(label)
            rows = model._default_manager.filter(**{f"{lookup}__in": objs})
            counts[model._meta.verbose_name_plural] = rows.count()
        return names, counts, set(), []

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            self.delete_object(request, obj)
        except ApplicationError as exc:
            messages.error(request, f"{obj}: {exc.message}")

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def delete_object(self, request: HttpRequest, obj: Any) -> None:
        """Delete one object; subclasses call their app's service (files, rules, audit)."""
        audit_record(
            tenant=self.audit_tenant(obj),
            actor=staff_actor(request),
            action=f"{self.audit_name or obj._meta.model_name}.delete",
            target=obj,
            changes={"name": str(obj)},
        )
        obj.delete()


class ReadOnlyInline(admin.TabularInline):
    """A list of related rows on a change page, with links, never edited there."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_see(request)

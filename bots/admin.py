"""Admin for bots and scopes (guardrail policies)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.http import HttpRequest

from bots.models import Bot, Scope
from bots.services import bot_delete, scope_delete, scope_kept
from chatbot_site.staff_admin import (
    RelatedOnlyFilter,
    TenantScopedAdmin,
    admin_link,
    admin_links,
    staff_actor,
)


@admin.register(Scope)
class ScopeAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "min_relevance", "answer_without_context", "updated_at"]
    list_filter = ["answer_without_context", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["tenant"]

    def delete_object(self, request: HttpRequest, obj: Any) -> None:
        scope_delete(tenant=obj.tenant, actor=staff_actor(request), scope=obj)


@admin.register(Bot)
class BotAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "scope_link", "model", "is_active", "top_k", "updated_at"]
    list_filter = ["is_active", ("scope", RelatedOnlyFilter), "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["id", "searches", "created_at", "updated_at"]
    list_select_related = ["tenant", "scope"]
    # The API deletes a bot with its conversations (read-only here), and so does the admin.
    summarize_deletion: ClassVar = {
        "conversations.Conversation": "bot",
        "conversations.Message": "conversation__bot",
    }

    @admin.display(description="scope", ordering="scope__name")
    def scope_link(self, obj: Bot) -> str:
        return admin_link(obj.scope)

    @admin.display(description="searches datasets")
    def searches(self, obj: Any) -> str:
        # Which datasets a bot searches is set through the API (PATCH /v1/bots/{id}).
        return admin_links(obj.datasets.all()) if obj.pk else "—"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # A bot given a scope here takes the scope's links lock as the API's writes do (in the
        # admin's transaction): a key limited to other bots changing that scope meanwhile
        # either finishes first or waits and sees this bot (it changed a scope this bot used).
        if "scope" in form.changed_data and obj.scope is not None:
            scope_kept(obj.scope.tenant, obj.scope)
        super().save_model(request, obj, form, change)

    def delete_object(self, request: HttpRequest, obj: Any) -> None:
        bot_delete(tenant=obj.tenant, actor=staff_actor(request), bot=obj)

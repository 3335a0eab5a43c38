from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chatbot_site.errors import ApplicationError
from tenants.management.commands._output import as_command_error, emit
from tenants.models import Role
from tenants.services import Actor, api_key_create, tenant_create


class Command(BaseCommand):
    help = "Create a tenant and its first admin API key; prints {tenant_id, api_key} as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short unique name: lowercase letters, digits, hyphens.")
        parser.add_argument("--name", default="", help="Display name (default: the slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py create_tenant")
        try:
            with transaction.atomic():
                tenant = tenant_create(slug=options["slug"], name=options["name"], actor=actor)
                _key, plaintext = api_key_create(
                    tenant=tenant, actor=actor, role=Role.ADMIN, name="initial admin key"
                )
        except ApplicationError as exc:
            raise as_command_error(exc) from exc
        emit(self, {"tenant_id": str(tenant.id), "api_key": plaintext})

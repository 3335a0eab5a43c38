from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chatbot_site.errors import ApplicationError
from tenants.management.commands._output import as_command_error, emit
from tenants.models import Role
from tenants.selectors import tenant_get_by_slug
from tenants.services import Actor, api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant; prints {id, api_key} as JSON (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_slug(slug=options["tenant"])
            key, plaintext = api_key_create(
                tenant=tenant,
                actor=Actor.system("manage.py create_api_key"),
                role=options["role"],
                name=options["name"],
            )
        except ApplicationError as exc:
            raise as_command_error(exc) from exc
        emit(self, {"id": str(key.id), "api_key": plaintext})

from __future__ import annotations

import getpass
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbot_site.errors import ApplicationError
from tenants.management.commands._output import as_command_error, emit
from tenants.selectors import tenant_get_by_slug
from tenants.services import Actor
from tenants.staff import staff_create


class Command(BaseCommand):
    help = (
        "Create a staff user with a confirmed TOTP device; the password comes from "
        "STAFF_PASSWORD (or a prompt). Prints {username, otpauth_uri} as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tenant", required=True, help="Slug of the tenant they work for.")
        parser.add_argument("--superuser", action="store_true", help="Sees every tenant.")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("STAFF_PASSWORD") or ""
        if not password:
            if not self.stdin_is_tty():
                raise CommandError("Set STAFF_PASSWORD (no terminal to prompt on).")
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords differ.")
        try:
            tenant = tenant_get_by_slug(slug=options["tenant"])
            user, device = staff_create(
                username=options["username"],
                password=password,
                tenant=tenant,
                superuser=options["superuser"],
                actor=Actor.system("manage.py create_staff"),
            )
        except ApplicationError as exc:
            raise as_command_error(exc) from exc
        emit(self, {"username": user.get_username(), "otpauth_uri": device.config_url})

    @staticmethod
    def stdin_is_tty() -> bool:
        import sys

        return sys.stdin.isatty()

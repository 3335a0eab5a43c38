from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chatbot_site.errors import ApplicationError


def emit(command: BaseCommand, payload: dict[str, Any]) -> None:
    """One line of JSON on stdout: what scripts parse."""
    command.stdout.write(json.dumps(payload))


def as_command_error(exc: ApplicationError) -> CommandError:
    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.details.items())
    return CommandError(f"{exc.message} {details}".strip())

"""``make fuzz``: schemathesis against a running server, as a scratch tenant of its own.

Property-based fuzzing from the OpenAPI schema (every operation: the schema's examples, its
boundary values, random data, and stateful sequences that follow the ids one answer returns into
the next request), checking that nothing answers 5xx and that answers match the schema. It
creates, updates and deletes whatever it can, so it runs as a new tenant
(``fuzz-<time>-<hex>``) whose key has a rate limit high enough not to be the only thing it
finds; the demo is left alone.
Every 500 this found so far is a regression test in the suite (``tests/test_hostile_bodies.py``
and others). schemathesis lives in ``.venv-fuzz``, apart from the project's requirements.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants.models import Role
from tenants.services import Actor, api_key_create, tenant_create

CHECKS = (
    "not_a_server_error,content_type_conformance,response_schema_conformance,"
    "use_after_free,ensure_resource_availability"
)


class Command(BaseCommand):
    help = "Fuzz the served API with schemathesis as a new scratch tenant (make fuzz)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The running server.")
        parser.add_argument("--examples", type=int, default=100, help="Cases per operation.")
        parser.add_argument(
            "--role", choices=[Role.ADMIN, Role.CHAT], default=Role.ADMIN, help="The key's role."
        )
        parser.add_argument(
            "--jwt", action="store_true", help="Authenticate with a JWT for the key, not the key."
        )
        parser.add_argument(
            "--schemathesis", default=".venv-fuzz/bin/schemathesis", help="The CLI to run."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py fuzz_api")
        slug = time.strftime("fuzz-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        with transaction.atomic():
            tenant = tenant_create(slug=slug, actor=actor)
            _key, plaintext = api_key_create(
                tenant=tenant, actor=actor, role=options["role"], name="fuzz",
                rate_limit_per_minute=1_000_000,
            )  # fmt: skip
        credential = plaintext
        if options["jwt"]:  # what POST /v1/auth/token gives for the key (valid 15 minutes)
            credential = _exchange(options["url"], plaintext)
        kind = "JWT" if options["jwt"] else "key"
        self.stdout.write(
            f"Fuzzing {options['url']} as tenant {slug} ({options['role']} {kind}) ..."
        )
        workdir = Path(settings.DATA_DIR) / "fuzz"  # schemathesis keeps a cache here
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(Path(options["schemathesis"]).resolve()),
            "run",
            f"{options['url'].rstrip('/')}/v1/schema",
            "--header",
            f"Authorization: Bearer {credential}",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(options["examples"]),
            "--checks",
            CHECKS,
            "--workers",
            "2",
        ]
        try:
            result = subprocess.run(argv, cwd=workdir, check=False)  # noqa: S603
        except FileNotFoundError as exc:
            raise CommandError(f"{argv[0]} not found: run `make fuzz`, which installs it.") from exc
        if result.returncode:
            raise CommandError(f"schemathesis found failures (exit {result.returncode}).")


def _exchange(url: str, api_key: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (the server under test, named by its operator)
        f"{url.rstrip('/')}/v1/auth/token",
        data=json.dumps({"api_key": api_key}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(json.loads(response.read())["access_token"])
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"Could not exchange the key for a JWT at {url}: {exc}") from exc

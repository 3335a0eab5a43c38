"""`make run`'s seed: a demo tenant, scope, bot and dataset, and a fresh admin key to try them.

Idempotent: existing demo objects are kept; each run revokes the previous run's key and prints
a new one (a key's secret can never be shown twice)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from bots.models import Bot, Scope
from bots.services import bot_create, scope_create
from knowledge.intake import document_add_upload, document_new_version
from knowledge.models import Dataset, Document, DocumentStatus
from knowledge.services import bot_datasets_set, dataset_create, document_delete
from tenants.models import ApiKey, Role, Tenant
from tenants.services import Actor, api_key_create, api_key_revoke, tenant_create

DEMO_SLUG = "demo"
# Real documents that ship with the repository: the service's own documentation.
DEMO_DOCUMENTS = [settings.BASE_DIR / "README.md", settings.BASE_DIR / "docs" / "BENCHMARKS.md"]
KEY_NAME = "make run"

DEMO_QUESTION = "How do I add documents to a dataset?"
# The demo bot's scope (make eval-guardrails measures its question sets against it).
DEMO_SCOPE: dict[str, Any] = {
    "name": "Product documentation",
    # What the demo documents talk about. The local model puts a one-word topic 0.15-0.22 from
    # unrelated questions ("guardrails" from a banana bread recipe, "security" from a Wi-Fi
    # question), a topic that names its subject ("chatbot guardrails") 0.06-0.11; the new topics
    # admit no more off-topic questions of our tune half than the old five did (docs/GUARDRAILS.md).
    "description": (
        "Questions about this chatbot service: setup, API, ingestion, retrieval, guardrails, security."
    ),
    "allowed_topics": [
        "installation",
        "API",
        "API keys and authentication",
        "ingestion",
        "retrieval",
        "streaming chat answers",
        "chatbot guardrails",
        "chatbot security",
        "operations",
        "chatbot benchmarks",
    ],
    "refusal_message": "I can only answer questions about this chatbot service.",
    # all-MiniLM-L6-v2 scores relevant README passages (Markdown, code) 0.25-0.55.
    "min_relevance": 0.2,
}


class Command(BaseCommand):
    help = "Seed the demo tenant, bot and dataset; print a fresh admin API key and a curl line."

    def add_arguments(self, parser: CommandParser) -> None:
        # Where the printed lines send requests: by default where `make run` listens (the
        # settings' HOST and PORT, from the environment or .env).
        parser.add_argument("--host", default=None)
        parser.add_argument("--port", default=None)
        parser.add_argument(
            "--document",
            action="append",
            type=Path,
            dest="documents",
            help="A file for the demo dataset (repeatable); default: README.md, BENCHMARKS.md.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py seed_demo")
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first() or tenant_create(
            slug=DEMO_SLUG, name="Demo tenant", actor=actor
        )
        scope = Scope.objects.for_tenant(tenant).filter(name="Product documentation").first()
        if scope is None:
            scope = scope_create(tenant=tenant, actor=actor, **DEMO_SCOPE)
        bot = Bot.objects.for_tenant(tenant).filter(name="Demo assistant").first()
        if bot is None:
            bot = bot_create(
                tenant=tenant,
                actor=actor,
                name="Demo assistant",
                scope=scope,
                description="Answers questions about the service from its own documentation.",
            )
        dataset = Dataset.objects.for_tenant(tenant).filter(name="Service documentation").first()
        if dataset is None:
            dataset = dataset_create(
                tenant=tenant, actor=actor, name="Service documentation", tags=["docs"]
            )
            bot_datasets_set(tenant=tenant, actor=actor, bot=bot, datasets=[dataset])

        queued = 0
        documents = options.get("documents") or DEMO_DOCUMENTS
        for path in documents:
            if not path.exists():
                continue
            data = path.read_bytes()
            versions = Document.objects.for_tenant(tenant).filter(dataset=dataset, source=path.name)
            current = versions.order_by("-created_at").first()
            if (
                current is not None
                and current.content_hash != hashlib.sha256(data).hexdigest()
                and current.status != DocumentStatus.PROCESSING
            ):
                # A newer version of the file: the document's text searched until it is read.
                added = document_new_version(
                    tenant=tenant, actor=actor, document=current, data=data
                )
            else:
                upload = SimpleUploadedFile(path.name, data)
                added = document_add_upload(
                    tenant=tenant, actor=actor, dataset=dataset, upload=upload, tags=["docs"]
                )
            queued += added.created
            # One document a file, not a second copy (one being read when a new version came).
            for old_document in versions.exclude(pk=added.document.pk):
                document_delete(tenant=tenant, actor=actor, document=old_document)

        for old in ApiKey.objects.for_tenant(tenant).filter(name=KEY_NAME, revoked_at__isnull=True):
            api_key_revoke(tenant=tenant, actor=actor, key=old)
        _key, plaintext = api_key_create(tenant=tenant, actor=actor, role=Role.ADMIN, name=KEY_NAME)

        base = f"http://{options['host'] or settings.HOST}:{options['port'] or settings.PORT}"
        chat_body = json.dumps(
            {"bot_id": str(bot.id), "messages": [{"role": "user", "content": DEMO_QUESTION}]}
        )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Demo tenant '{tenant.slug}', bot '{bot.name}' ({bot.id}),",
                    f"dataset '{dataset.name}' ({dataset.id}): {len(documents)} documents"
                    f" from this repository ({queued} newly queued for ingestion).",
                    f"Admin API key (shown once): {plaintext}",
                    "Try:",
                    f"  export CHATBOT_API_KEY={plaintext} BOT_ID={bot.id} DATASET_ID={dataset.id}",
                    f"  curl -s {base}/v1/health",
                    f'  curl -s -H "Authorization: Bearer $CHATBOT_API_KEY" {base}/v1/bots',
                    "Its documents are being ingested (a few seconds, minutes on a busy"
                    " machine; until each is `ready` the bot refuses questions):",
                    f'  curl -s -H "Authorization: Bearer $CHATBOT_API_KEY"'
                    f" {base}/v1/datasets/$DATASET_ID/documents",
                    'Ask the demo bot (add "stream": true for Server-Sent Events):',
                    f'  curl -s -H "Authorization: Bearer $CHATBOT_API_KEY"'
                    f" -H \"Content-Type: application/json\" {base}/v1/chat -d '{chat_body}'",
                    f"  API reference: {base}/v1/docs",
                    "More keys: .venv/bin/python manage.py create_api_key --tenant demo --role chat",
                    f"Staff admin: {base}/{settings.ADMIN_URL} (password + authenticator code);"
                    " create a user with",
                    "  STAFF_PASSWORD=... .venv/bin/python manage.py create_staff you --tenant demo"
                    " --superuser",
                    "",
                ]
            )
        )
